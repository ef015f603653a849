"""The Brain Worker against a real python-socketio hub on localhost (nsm.ai.dev_hub), with
the models trained on simulator telemetry (the `sim_models` fixture) and PostgreSQL."""
import math
import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text

from nsm.ai.dev_hub import DevHub
from nsm.ai.hub import HubClient
from nsm.ai.worker import BrainWorker, PredictionStore
from nsm.app.sim_telemetry import simulate_telemetry
from nsm.contract import load_contract

pytestmark = pytest.mark.postgres
TOKEN = "s3cret"


def simulated_rows(seconds: float, seed: int, start: float | None = None) -> list[tuple[str, float, dict]]:
    rows = []
    simulate_telemetry(load_contract("so101"), lambda d, p, t: rows.append((d, t, p)), seconds,
                       start=time.time() if start is None else start, seed=seed, battery_ah=0.03)
    return rows


@pytest.fixture(scope="module")
def rows():
    return simulated_rows(40.0, seed=11)


def wait_until(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_predictions_reach_the_hub_a_dashboard_and_the_database(sim_models, rows, pg_db):
    import socketio

    _, models = sim_models
    hub = DevHub(token=TOKEN).start()
    dashboard = socketio.Client()
    seen_by_dashboard = []
    dashboard.on("update_data", seen_by_dashboard.append)
    dashboard.connect(hub.url, auth={"token": TOKEN}, transports=["websocket"])
    client = HubClient(hub.url, token=TOKEN)
    store = PredictionStore(pg_db)
    worker = BrainWorker(list(models.values()), hub=client, store=store)
    try:
        assert wait_until(lambda: client.connected)
        predictions = [p for row in rows for p in worker.feed("EP01", *row)]
        assert {p.model for p in predictions} == {"battery", "collision"}
        assert wait_until(lambda: len(hub.updates()) == len(predictions)), (len(hub.updates()), len(predictions))
        assert wait_until(lambda: len(seen_by_dashboard) == len(predictions))
    finally:
        client.close()
        store.close()
        dashboard.disconnect()
        hub.stop()
    update = hub.updates()[-1]
    assert update["type"] == "ai_prediction" and update["robot_id"] == "EP01"
    assert set(update) == {"type", "robot_id", "model", "value", "confidence", "unit", "message", "timestamps"}
    assert set(update["timestamps"]) == {"sample", "received", "predicted"}
    collision = [u for u in hub.updates() if u["model"] == "collision"]
    assert all(0 <= u["value"] <= 1 and u["unit"] == "probability" and u["message"].startswith("collision risk ")
               for u in collision)
    battery = [u for u in hub.updates() if u["model"] == "battery"]
    assert all(u["unit"] == "s" and u["message"].startswith("battery empty in ") for u in battery)
    assert [u["value"] for u in hub.updates()] == [p.value for p in predictions]  # in order, none lost
    assert store.written == len(predictions) and store.dropped == 0
    engine = create_engine(pg_db.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT model, count(*) FROM predictions WHERE robot_id = 'EP01' GROUP BY model")).all()
    engine.dispose()
    assert dict(stored) == {m: sum(p.model == m for p in predictions) for m in ("battery", "collision")}


def test_a_hub_that_is_down_never_blocks_and_gets_the_newest_when_it_comes_back(sim_models, rows):
    _, models = sim_models
    hub = DevHub()
    hub.start()
    port = hub.port
    hub.stop()  # nothing listens there now
    client = HubClient(f"http://127.0.0.1:{port}", max_pending=50)
    worker = BrainWorker([models["collision"]], hub=client)
    try:
        predictions = [p for row in rows for p in worker.feed("EP01", *row)]
        assert len(predictions) > 100 and client.pending == 50 and client.dropped == len(predictions) - 50
        assert not client.connected and client.last_error
        back = DevHub(port=port).start()
        try:
            assert wait_until(lambda: len(back.updates()) == 50, timeout=30)
        finally:
            client.close()
            back.stop()
    finally:
        client.close()
    assert [u["value"] for u in back.updates()] == [p.value for p in predictions[-50:]]  # the newest, in order


def test_a_slow_hub_never_blocks_the_worker(sim_models, rows):
    _, models = sim_models
    hub = DevHub(delay_s=0.04).start()  # reads 25 messages a second at most
    client = HubClient(hub.url)
    worker = BrainWorker([models["collision"]], hub=client)
    try:
        assert wait_until(lambda: client.connected)
        predictions = [p for row in rows for p in worker.feed("EP01", *row)]
        behind = len(predictions) - len(hub.updates())
        assert behind > len(predictions) // 2  # feed() finished long before the hub caught up
        assert wait_until(lambda: len(hub.updates()) == len(predictions), timeout=60)
    finally:
        client.close()
        hub.stop()
    assert client.dropped == 0 and [u["value"] for u in hub.updates()] == [p.value for p in predictions]


def test_a_wrong_token_is_refused_and_the_worker_carries_on(sim_models, rows):
    _, models = sim_models
    hub = DevHub(token=TOKEN).start()
    client = HubClient(hub.url, token="wrong", max_pending=10)
    worker = BrainWorker([models["collision"]], hub=client)
    try:
        assert wait_until(lambda: hub.refused > 0)
        predictions = [p for row in rows[:3000] for p in worker.feed("EP01", *row)]
        assert predictions and hub.updates() == [] and not client.connected
        assert client.dropped == len(predictions) - 10
    finally:
        client.close()
        hub.stop()


def test_malformed_rows_are_skipped_and_counted(sim_models, rows):
    _, models = sim_models
    worker = BrainWorker(list(models.values()))
    good = rows[:1500]
    t = good[-1][1]
    bad = [
        ("EP01", "joint_states", t, None),  # no payload
        ("EP01", "joint_states", float("nan"), {"position": [0.0] * 6}),  # no time
        ("EP01", "joint_states", t + 1, {"position": "fast", "velocity": [0] * 6, "effort": [0] * 6}),
        ("EP01", "joint_states", t + 1, {"position": [0.0] * 5, "velocity": [0] * 6, "effort": [0] * 6}),
        ("EP01", "joint_commands", t + 1, {"position": [math.inf] * 6}),
        ("EP01", "joint_commands", t - 100, {"position": [0.0] * 6}),  # older than what came before
        ("EP01", "battery", t + 1, {"value": None, "voltage": 12.0, "current": 1.0}),
        (None, "battery", t + 1, {"value": 50.0}),
    ]
    for row in good:
        worker.feed("EP01", *row)
    before = worker.stats.predictions
    for row in bad:
        assert worker.feed(*row) == []
    assert worker.stats.skipped == len(bad)
    for row in rows[1500:3000]:
        worker.feed("EP01", *row)
    assert worker.stats.predictions > before + 100  # it carries on with good rows


def test_nsm_worker_follows_the_database_and_sends_to_the_hub(sim_models, tmp_path):
    from nsm.telemetry.writer import open_writer

    _, models = sim_models
    db = f"sqlite:///{tmp_path / 'telemetry.db'}"
    writer = open_writer(db, "EP07", tmp_path / "spool")
    for data_type, stamp, payload in simulated_rows(3.0, seed=3):
        writer.log(data_type, payload, stamp)
    writer.close()
    hub = DevHub(namespace="/robots", token=TOKEN).start()
    try:
        done = subprocess.run([sys.executable, "-m", "nsm.cli", "worker", "--model", str(models["collision"]),
                               "--db-url", db, "--hub-url", hub.url, "--hub-namespace", "/robots", "--from-start",
                               "--duration", "15"], env={**os.environ, "NSM_HUB_TOKEN": TOKEN},
                              capture_output=True, text=True, timeout=120)
    finally:
        hub.stop()
    assert done.returncode == 0, done.stderr
    updates = hub.updates()
    # 3 s at 30 Hz, a window every 0.1 s once the first 0.47 s are in
    assert 20 <= len(updates) <= 30 and {u["robot_id"] for u in updates} == {"EP07"}, done.stdout
    assert f"{len(updates)} predictions" in done.stdout
    engine = create_engine(db)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM predictions")).scalar_one() == len(updates)
    engine.dispose()
