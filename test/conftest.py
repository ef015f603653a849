"""Shared fixtures: the robot contract, the real PostgreSQL server of scripts/test.sh, a TCP
proxy that can cut the database connection, and ROS 2 environment isolation."""
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from helpers import free_port
from nsm.contract import load_contract

# launch_testing files need launch/launch_ros (not on PyPI): docker/Dockerfile.ros runs them
collect_ignore = ["launch_tests"]


def pytest_collection_modifyitems(items):
    """Every test that needs the PostgreSQL server is marked `postgres` by the fixtures it uses,
    so `-m "not postgres"` (colcon test, colcon.meta) cannot pick one up by mistake."""
    for item in items:
        if "pg_dsn" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """Each test runs in its own folder: defaults such as runs/telemetry.db land there, not in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def contract():
    return load_contract("so101")


@pytest.fixture(scope="session")
def pg_dsn():
    """DSN of the real PostgreSQL server (set by scripts/test.sh and .ci/run). Missing -> fail."""
    dsn = os.environ.get("NSM_TEST_PG_DSN")
    if not dsn:
        pytest.fail("NSM_TEST_PG_DSN is not set: run the tests with `bash scripts/test.sh`, which starts PostgreSQL")
    return dsn


@contextlib.contextmanager
def fresh_database(pg_dsn):
    """A new, empty database on the test server (its DSN); dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_dsn.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_db(pg_dsn):
    with fresh_database(pg_dsn) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def sim_models(pg_dsn, tmp_path_factory):
    """Telemetry models trained the way a user would: `nsm sim telemetry` into PostgreSQL
    (4 min of robot time: whole battery packs, ~24 collisions), then `nsm ai train` for
    each type. (database DSN, {type: model folder})."""
    import sys

    folder = tmp_path_factory.mktemp("sim_models")
    with fresh_database(pg_dsn) as dsn:
        env = dict(os.environ, NSM_DB_URL=dsn)

        def nsm(*args):
            done = subprocess.run([sys.executable, "-m", "nsm.cli", *args], cwd=folder, env=env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, done.stdout + done.stderr

        nsm("sim", "telemetry", "--robot", "EP01", "--seconds", "240", "--battery-ah", "0.03")
        models = {kind: folder / kind for kind in ("battery", "collision")}
        for kind, out in models.items():
            nsm("ai", "train", "--robot", "EP01", "--type", kind, "--out", str(out))
        yield dsn, models


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` simulates an outage (refuses and
    drops every connection), `restore()` ends it on the same port."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self._listener.close()
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def pg_proxy_url(pg_db):
    """(url through a cuttable proxy, the proxy, the direct url) for outage tests."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_db)
    proxy = TcpProxy(url.host, url.port)
    yield url.set(port=proxy.port).render_as_string(hide_password=False), proxy, pg_db
    try:
        proxy.cut()
    except OSError:
        pass


@pytest.fixture
def ros_env(monkeypatch):
    """Environment for ROS 2 processes: localhost-only discovery on a domain of our own."""
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    domain = os.environ.get("ROS_DOMAIN_ID") or str(100 + os.getpid() % 100)
    monkeypatch.setenv("ROS_DOMAIN_ID", domain)
    return dict(os.environ)


class PgServer:
    """A PostgreSQL server of the test's own (scripts/pg_throwaway.sh), to kill and restart."""

    SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pg_throwaway.sh"

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/nsm_test"
        self.start()

    def start(self) -> None:
        subprocess.run(["bash", str(self.SCRIPT), "start", str(self.folder), str(self.port)], check=True,
                       capture_output=True, timeout=120)
        # Like a database beside a robot: it must not outrank the control process for a core.
        pid = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
        os.setpriority(os.PRIO_PROCESS, pid, 10)  # backends forked from it inherit this

    def crash_later(self, after: float, down_for: float) -> subprocess.Popen:
        """In `after` s, SIGKILL the postmaster and every backend (a crash, not a shutdown),
        then start the server again `down_for` s later. A separate process does it, so the
        test's own process only forks once, before it starts measuring. The stale lock file
        is removed because the killed postmaster may linger as a zombie (no reaper here)."""
        data = self.folder / "data"
        script = (f"sleep {after}; pid=$(head -1 {data}/postmaster.pid); kill -KILL $pid; pkill -KILL -P $pid; "
                  f"sleep 0.3; rm -f {data}/postmaster.pid {data}/.s.PGSQL.*; sleep {down_for}; "
                  f"bash {self.SCRIPT} start {self.folder} {self.port}; "
                  f"renice -n 10 -p $(head -1 {data}/postmaster.pid) >/dev/null")
        return subprocess.Popen(["nice", "-n", "10", "bash", "-c", script], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        subprocess.run(["bash", str(self.SCRIPT), "stop", str(self.folder)], check=False, capture_output=True, timeout=120)


@pytest.fixture
def pg_server():
    folder = Path(tempfile.mkdtemp(prefix="nsm-test-pg-"))  # not under pytest's root-only tmp: postgres must enter
    server = PgServer(folder)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)
