"""The fleet dashboard of `nsm serve` in a real browser (Debian's chromium through
Playwright) against the service as a process on the real PostgreSQL: the fleet page shows
the rolled-up robots, a robot that starts posting appears within 2 s, a prediction the
Brain Worker stores shows up live as an alert, the robot page draws its minutes; reads
need a read-only (or the robot's own) token. The JSON on SQLite (the default database) too."""
import contextlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from nsm.ai.predictor import Prediction
from nsm.ai.worker import PredictionStore
from nsm.telemetry import rows
from nsm.telemetry.db import connect
from nsm.telemetry.rollups import roll_up_pending
from nsm.telemetry.sinks import DatabaseSink, HttpSink
from nsm.telemetry.tokens import add_token
from test_ingest import Service
from test_view_browser import CHROMIUM

SHOT = Path(os.environ["NSM_SCREENSHOT_DIR"]) if os.environ.get("NSM_SCREENSHOT_DIR") else None
FLEET = {"EP02": (91.0, 33.4), "EP03": (64.5, 33.6), "EP04": (15.0, 35.2), "EP05": (47.0, 33.4)}  # battery %, p99 ms


def history(robot: str, battery: float, p99: float, minutes: int = 30) -> list[tuple]:
    """`minutes` of a robot's loop timing (1 Hz here), battery and two episodes, ending 2 minutes ago."""
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    out, seq = [], 0
    for m in range(minutes):
        start = end - timedelta(minutes=minutes - m)
        for s in range(60):
            seq += 1
            top = p99 + 0.1 * ((minutes - 1 - m) % 5)  # a little variation; the last minute's is p99
            period = top if s == 0 else top - 0.3
            out.append((robot, "loop_timing", seq, f'{{"value": {period}}}', start + timedelta(seconds=s)))
        out.append((robot, "battery", seq, f'{{"value": {battery + 0.2 * (minutes - m)}}}', start))
    for k in range(2):
        seq += 1
        payload = rows.episode(f"/data/{robot}/episode_{k:04d}.hdf5", k == 0, 300, 10.0, "act")
        out.append((robot, "episode", seq, json.dumps(payload), end - timedelta(minutes=5 - k)))
    return out


def get(url, path, token):
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=10)


@contextlib.contextmanager
def fleet_served(db_url: str, tmp_path: Path):
    """`nsm serve` (per-robot tokens only) on a database holding FLEET's rolled-up history:
    (service, db_url, read-only token, EP01's token)."""
    engine = connect(db_url)
    sink = DatabaseSink(db_url, tmp_path / "spool")
    for robot_id, (battery, p99) in FLEET.items():
        assert sink.write(history(robot_id, battery, p99))
    assert roll_up_pending(engine) == len(FLEET) * 30  # each robot's 30 minutes
    _, read = add_token(engine)
    _, ep01 = add_token(engine, "EP01")
    svc = Service(db_url, None)
    try:
        yield svc, db_url, read, ep01
    finally:
        svc.kill()


@pytest.fixture(params=["sqlite", "postgres"])
def fleet_server(request, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'server.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_db")
    with fleet_served(db_url, tmp_path) as served:
        yield served


def test_the_fleet_json_is_the_rollups_and_reads_need_a_reading_token(fleet_server):
    svc, _, read, ep01 = fleet_server
    assert get(svc.url, "/v1/fleet", None).status_code == 401
    assert get(svc.url, "/v1/fleet", ep01).status_code == 403  # a robot's token: its own robot only
    assert get(svc.url, "/v1/robots/EP02", ep01).status_code == 403
    assert get(svc.url, "/v1/robots/EP01", ep01).status_code == 200
    fleet = {r["robot_id"]: r for r in get(svc.url, "/v1/fleet", read).json()["robots"]}
    assert set(fleet) == set(FLEET)
    for robot_id, (battery, p99) in FLEET.items():
        r = fleet[robot_id]
        assert r["battery"] == pytest.approx(battery + 0.2) and r["loop_ms_p99"] == pytest.approx(p99)
        assert r["rows_per_s"] == pytest.approx(61 / 60) and r["predictions"] == []
    detail = get(svc.url, "/v1/robots/EP04", read).json()
    assert len(detail["minutes"]) == 30 and [e["success"] for e in detail["episodes"]] == [False, True]


def test_the_dashboard_shows_the_fleet_a_new_robot_and_a_prediction_in_chromium(pg_db, tmp_path, monkeypatch):
    assert CHROMIUM, "Debian's chromium is missing: bash scripts/setup.sh --test installs it"
    with fleet_served(pg_db, tmp_path) as served:
        browse(*served, tmp_path, monkeypatch)


def browse(svc, db, read, ep01, tmp_path, monkeypatch):
    """The browser part of the test above, on the served fleet."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("BACKEND_API_TOKEN", ep01)
    robot = HttpSink(svc.url, tmp_path / "ep01-spool")
    names = [f"joint_{i}" for i in range(6)]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 560})
        page.goto(f"{svc.url}/#token={read}")
        page.wait_for_selector('tr[data-robot="EP05"]', timeout=10_000)
        assert page.locator("#fleet tbody tr").count() == 4 and page.locator("#empty").is_hidden()
        assert "battery 15%" in page.locator('tr[data-robot="EP04"]').inner_text()  # an alert from the rollups
        assert "token=" not in page.url  # the token left the address bar (kept in session storage)
        page.wait_for_selector("#status.live", timeout=10_000)

        # a robot starts posting (its own token, through nsm's HttpSink, every 0.5 s as the writer does)
        started, seq, appeared = time.monotonic(), 0, None
        while time.monotonic() - started < 10 and appeared is None:
            batch = []
            for _ in range(15):
                seq += 1
                batch.append(("EP01", "joint_states", seq,
                              json.dumps(rows.joint_states(names, [0.1] * 6, [0] * 6, [0] * 6)), datetime.now(UTC)))
            batch.append(("EP01", "battery", seq, json.dumps(rows.battery(12.2, 0.5, 0.83)), datetime.now(UTC)))
            assert robot.write(batch)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline and appeared is None:
                if page.locator('tr[data-robot="EP01"]').count():
                    appeared = time.monotonic() - started
                page.wait_for_timeout(50)
        assert appeared is not None and appeared < 2.0, f"EP01 appeared after {appeared} s"
        assert "83%" in page.locator('tr[data-robot="EP01"]').inner_text()  # its live battery

        # the Brain Worker stores a prediction: it shows up live, as an alert, the robot first in the table
        store = PredictionStore(db, every_s=0.05)
        now = time.time()
        store.add(Prediction("EP03", "collision", 0.8, 0.8, "probability", "collision risk 80%", now, now, now))
        store.close()
        page.wait_for_selector('tr[data-robot="EP03"] .badge:has-text("collision risk 80%")', timeout=5_000)
        assert page.locator("#fleet tbody tr").first.get_attribute("data-robot") in ("EP03", "EP04")
        assert "collision 80% (confidence 80%)" in page.locator('tr[data-robot="EP03"]').inner_text()
        shot = page.screenshot()

        page.click('a[href="/robots/EP04"]')
        page.wait_for_selector("#loop polyline", state="attached", timeout=10_000)
        points = page.locator("#loop polyline").get_attribute("points").split()
        assert len(points) == 30  # one per rolled-up minute
        assert page.locator("#episodes li").count() == 2 and "success" in page.locator("#episodes").inner_text()
        robot_shot = page.screenshot()
        browser.close()
    if SHOT is not None:
        SHOT.mkdir(parents=True, exist_ok=True)
        (SHOT / "dashboard.png").write_bytes(shot)
        (SHOT / "dashboard_robot.png").write_bytes(robot_shot)
