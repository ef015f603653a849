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
from nsm.telemetry.tokens import add_token, digest
from nsm.telemetry.writer import TelemetryWriter

pytestmark = pytest.mark.postgres
TOKEN = "s3cret-token"


class Service:
    def __init__(self, db_url, token=TOKEN, *options):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "nsm.cli", "serve", "--db-url", db_url, "--port", str(self.port),
                     *options] + (["--token", token] if token else [])
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
    svc = Service(pg_db)
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
    assert post(svc.url, batch(row(seq=2**63))).status_code == 422  # past BIGINT
    # what PostgreSQL's jsonb cannot hold (found by test_ingest_fuzz): refused, never spooled to fail forever
    assert post(svc.url, batch(row(payload={"value": float("nan")}))).status_code == 422
    assert post(svc.url, batch(row("note", payload={"text": "a\u0000b"}))).status_code == 422
    assert post(svc.url, {"robot_id": "EP01", "rows": []}).status_code == 422
    assert post(svc.url, batch(row(), robot="EP01'; DROP TABLE x;--")).status_code == 422  # not a robot id
    assert post(svc.url, batch(row(payload={"value": 1.0, "pad": "x" * (5 * 2**20)}))).status_code == 413
    assert rows(db) == []

    sqlish = "'); DROP TABLE robot_telemetry; -- \\x00 ✓"
    first = row(seq=1)
    ok = post(svc.url, batch(first, row("note", 2, {"text": sqlish})))
    assert ok.status_code == 200 and ok.json() == {"accepted": 2, "stored": True}
    assert post(svc.url, batch(first)).status_code == 200  # a retried row (all of it again) is accepted, stored once
    stored = rows(db)
    assert [(r.data_type, r.seq) for r in stored] == [("battery", 1), ("note", 2)]
    assert stored[1].payload == {"text": sqlish}

    # a payload is stored as the JSON text sent: nesting as deep as the parser goes is stored, deeper is refused
    deep, deeper = ('{"a":' + "[" * n + "]" * n + "}" for n in (1400, 5000))
    body = '{"robot_id":"EP01","rows":[{"data_type":"note","seq":3,"payload":%s,"created_at":"%s"}]}'
    assert post(svc.url, None, raw=(body % (deep, datetime.now(UTC).isoformat())).encode()).status_code == 200
    assert post(svc.url, None, raw=(body % (deeper, datetime.now(UTC).isoformat())).encode()).status_code == 422
    assert [r.seq for r in rows(db)] == [1, 2, 3]


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


def nsm(*args):
    out = subprocess.run([sys.executable, "-m", "nsm.cli", *args], capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout + out.stderr


def test_each_robot_writes_only_its_own_rows_with_its_own_token(pg_db, tmp_path):
    """Per-robot tokens (`nsm serve token add|revoke|list`): a robot's token writes its own
    robot_id only, a read-only token writes nothing, a revoked one stops working within the
    server's 5 s cache; the database and the server's output never hold a token."""
    code, out = nsm("serve", "--db-url", pg_db, "--port", str(free_port()))
    assert code != 0 and "nsm serve token add --robot ID" in out  # no token at all: nothing could send
    code, out = nsm("serve", "token", "add", "--robot", "EP01", "--db-url", pg_db)
    assert code == 0, out
    ep01 = out.strip().splitlines()[-1]
    _, ep02 = add_token(connect(pg_db), "EP02")
    read_id, reader = add_token(connect(pg_db), None, "dashboard")
    assert len({ep01, ep02, reader}) == 3 and all(t.startswith("nsm_") and len(t) > 40 for t in (ep01, ep02, reader))
    svc = Service(pg_db, "")
    try:
        assert post(svc.url, batch(row(seq=1)), token=ep01).json() == {"accepted": 1, "stored": True}
        refused = post(svc.url, batch(row(seq=2), robot="EP02"), token=ep01)
        assert refused.status_code == 403 and "writes EP01" in refused.json()["detail"]
        assert post(svc.url, batch(row(seq=3)), token=reader).status_code == 403  # read-only
        assert post(svc.url, batch(row(seq=4)), token=TOKEN).status_code == 401  # no fleet token given
        assert post(svc.url, batch(row(seq=5), robot="EP02"), token=ep02).status_code == 200
        assert [r.seq for r in rows(pg_db)] == [1] and [r.seq for r in rows(pg_db, "EP02")] == [5]

        code, out = nsm("serve", "token", "revoke", "1", "--db-url", pg_db)
        assert code == 0, out
        revoked_at, deadline = time.monotonic(), time.monotonic() + 15
        while post(svc.url, batch(row(seq=6)), token=ep01).status_code == 200:
            assert time.monotonic() < deadline, "a revoked token still writes after 15 s"
            time.sleep(0.5)
        assert time.monotonic() - revoked_at < 6.5  # the 5 s cache, and the poll
        assert post(svc.url, batch(row(seq=7), robot="EP02"), token=ep02).status_code == 200  # the others go on
    finally:
        svc.kill()
    logged = svc.proc.stdout.read()
    code, listed = nsm("serve", "token", "list", "--db-url", pg_db)
    assert code == 0 and "EP01" in listed and "dashboard" in listed and str(read_id) in listed
    with connect(pg_db).connect() as conn:
        stored = " ".join(str(v) for r in conn.execute(text("SELECT * FROM api_tokens")).all() for v in r)
    assert digest(ep01) in stored
    for token in (ep01, ep02, reader):
        assert token not in stored and token not in logged and token not in listed


def test_sigkill_of_the_server_and_of_postgresql_under_a_fleet_loses_and_duplicates_nothing(pg_server, tmp_path,
                                                                                            monkeypatch):
    """Robots' own writers (HttpSink) -> nsm serve -> PostgreSQL; mid-stream PostgreSQL is killed
    (SIGKILL of the postmaster and its backends) and later nsm serve too. A batch is answered
    only once committed (503 while the database is down: the robot keeps it), so after both
    come back every row is stored exactly once."""
    connect(pg_server.dsn)
    svc = Service(pg_server.dsn)
    monkeypatch.setenv("BACKEND_API_TOKEN", TOKEN)
    robots = [f"EP{k:02d}" for k in range(4)]
    writers = [TelemetryWriter(svc.url, r, tmp_path / r, batch_size=200, flush_interval=0.05, retry_interval=0.3)
               for r in robots]
    n = 4000
    chaos = None
    for i in range(n):
        for w in writers:
            w.log("joint_states", {"position": [i * 1e-3] * 6, "i": i})
        if i == n // 4:
            chaos = pg_server.crash_later(after=0.2, down_for=1.5)  # the database dies under load ...
        if i == n // 2:
            svc.kill()  # ... then the server
        if i == 5 * n // 8:
            svc.start()
        if i % 40 == 0:
            time.sleep(0.01)
    assert chaos.wait(timeout=60) == 0, chaos.stderr.read()
    stats = [w.close(timeout=180) for w in writers]
    svc.kill()
    assert sum(s.failures for s in stats) >= 2 and sum(s.spooled for s in stats) > 0  # both outages were felt
    assert all(s.rejected == 0 and s.spool_dropped == 0 for s in stats)
    with connect(pg_server.dsn).connect() as conn:
        for robot in robots:
            total, distinct = conn.execute(text(
                "SELECT count(*), count(DISTINCT (payload->>'i')::int) FROM robot_telemetry WHERE robot_id = :r"),
                {"r": robot}).one()
            assert (total, distinct) == (n, n), robot  # every row, exactly once


def test_several_workers_share_the_port_and_store_every_batch(pg_db):
    """`nsm serve --workers 2`: two server processes, each with its own coalescing writer,
    behind one port; every batch is stored once whichever worker took it."""
    connect(pg_db)
    svc = Service(pg_db, TOKEN, "--workers", "2")
    try:
        workers = subprocess.run(["pgrep", "-P", str(svc.proc.pid)], capture_output=True, text=True).stdout.split()
        clients = [httpx.Client(base_url=svc.url) for _ in range(8)]  # a connection each: both workers get some
        for seq in range(40):
            response = clients[seq % 8].post("/v1/telemetry", content=json.dumps(batch(row(seq=seq))),
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 200, response.text
    finally:
        svc.proc.terminate()  # the supervisor stops its workers (SIGKILL would orphan them)
        svc.proc.wait(timeout=30)
    assert len(workers) >= 2  # uvicorn's supervisor holds the workers (and its own helper)
    assert [r.seq for r in rows(pg_db)] == list(range(40))


def test_a_sink_with_two_batches_in_flight_spools_those_answered_with_an_error(service, tmp_path, monkeypatch):
    """HttpSink(in_flight=2), as the writer process uses it: flush() sends a batch and returns
    before its answer; a batch answered with an error (the server gone) is spooled when the
    answer is taken, an invalid one is counted as rejected, and nothing is lost or doubled."""
    from nsm.telemetry.sinks import HttpSink

    svc, db = service
    monkeypatch.setenv("BACKEND_API_TOKEN", TOKEN)
    sink = HttpSink(svc.url, tmp_path / "spool", in_flight=2)

    def rows_from(start, n=100):
        return [("EP03", "joint_states", s, json.dumps({"position": [0.0] * 6, "i": s}), datetime.now(UTC))
                for s in range(start, start + n)]

    assert all(sink.flush(rows_from(k * 100)) for k in range(5))
    assert sink.flush([("EP03", "battery", 10_000, '{"value": "full"}', datetime.now(UTC))])  # invalid: 422
    assert sink.drain() and sink.stats.written == 500 and sink.stats.rejected == 1 and sink.stats.spooled == 0
    svc.kill()
    assert sink.flush(rows_from(500)) and sink.flush(rows_from(600))  # both sent, their answers not taken
    assert not sink.flush(rows_from(700))  # the third takes them (errors: spooled), then spools itself
    assert sink.drain() and sink.stats.spooled == 300 and not sink.ok
    svc.start()
    assert sink.flush(rows_from(800)) and sink.drain()  # the spool first, then the new batch
    assert [r.payload["i"] for r in rows(db, "EP03")] == list(range(900))
    assert not list((tmp_path / "spool").glob("*.jsonl"))
