"""The ingest service of `nsm serve`, as a real process over HTTP on localhost, writing to
the real PostgreSQL: auth, validation, verbatim storage, and a robot's writer that keeps
every row through a restart of the service."""
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from helpers import free_port
from nsm.telemetry.db import connect
from nsm.telemetry.writer import TelemetryWriter

pytestmark = pytest.mark.postgres
TOKEN = "s3cret-token"


class Service:
    def __init__(self, db_url, spool):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "nsm.cli", "serve", "--db-url", db_url, "--token", TOKEN,
                     "--port", str(self.port), "--spool", str(spool)]
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("ingest service did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def service(pg_db, tmp_path):
    connect(pg_db)
    svc = Service(pg_db, tmp_path / "server-spool")
    yield svc, pg_db
    if svc.proc.poll() is None:
        svc.kill()


def rows(db_url, robot="EP01"):
    with connect(db_url, migrate=False).connect() as conn:
        return conn.execute(text("SELECT data_type, seq, payload FROM robot_telemetry WHERE robot_id = :r ORDER BY seq"),
                            {"r": robot}).all()


def batch(*rows_, robot="EP01"):
    return {"robot_id": robot, "rows": list(rows_)}


def row(data_type="battery", seq=1, payload=None):
    return {"data_type": data_type, "seq": seq, "payload": payload if payload is not None else {"value": 50.0},
            "created_at": datetime.now(UTC).isoformat()}


def post(url, body, token=TOKEN, raw=None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{url}/v1/telemetry", content=raw if raw is not None else json.dumps(body),
                      headers={**headers, "Content-Type": "application/json"}, timeout=10)


def test_auth_validation_and_verbatim_storage(service):
    svc, db = service
    assert post(svc.url, batch(row()), token=None).status_code == 401
    assert post(svc.url, batch(row()), token="wrong").status_code == 401
    assert rows(db) == []  # nothing written without the token

    assert post(svc.url, None, raw=b"{not json").status_code == 422
    assert post(svc.url, batch(row(payload={"volts": 12}))).status_code == 422  # battery needs a numeric value
    assert post(svc.url, batch(row("joint_states", payload={"position": ["a"]}))).status_code == 422
    assert post(svc.url, batch(row(seq=-1))).status_code == 422
    assert post(svc.url, {"robot_id": "EP01", "rows": []}).status_code == 422
    assert post(svc.url, batch(row(), robot="EP01'; DROP TABLE x;--")).status_code == 422  # not a robot id
    assert post(svc.url, batch(row(payload={"value": 1.0, "pad": "x" * (5 * 2**20)}))).status_code == 413
    assert rows(db) == []

    sqlish = "'); DROP TABLE robot_telemetry; -- \\x00 ✓"
    ok = post(svc.url, batch(row(seq=1), row("note", 2, {"text": sqlish})))
    assert ok.status_code == 200 and ok.json() == {"accepted": 2, "stored": True}
    assert post(svc.url, batch(row(seq=1))).status_code == 200  # a retried row is accepted, stored once
    stored = rows(db)
    assert [(r.data_type, r.seq) for r in stored] == [("battery", 1), ("note", 2)]
    assert stored[1].payload == {"text": sqlish}


def test_robot_writer_keeps_every_row_through_a_service_restart(service, tmp_path, monkeypatch):
    svc, db = service
    monkeypatch.setenv("BACKEND_API_TOKEN", TOKEN)
    writer = TelemetryWriter(svc.url, "EP02", tmp_path / "robot-spool", batch_size=500, flush_interval=0.05,
                             retry_interval=0.3)
    n = 20_000
    for i in range(n):
        writer.log("joint_states", {"position": [i * 1e-3] * 6, "i": i})
        if i == n // 3:
            svc.kill()  # the server dies mid-stream ...
        if i == n // 2:
            svc.start()  # ... and comes back
        if i % 100 == 0:
            time.sleep(0.01)
    stats = writer.close(timeout=120)
    assert stats.failures >= 1 and stats.spooled > 0 and stats.rejected == 0
    got = [r.payload["i"] for r in rows(db, "EP02")]
    assert sorted(got) == list(range(n))  # every row, exactly once
