"""A PostgreSQL server and `nsm serve` for the telemetry benchmarks (both on this machine)."""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def postgres(port: int, fsync: bool = False, max_connections: int = 100, reuse_env: bool = True) -> Iterator[str]:
    """The DSN of NSM_TEST_PG_DSN's server (when `reuse_env`), else of a throwaway one
    (scripts/pg_throwaway.sh) stopped and removed afterwards."""
    if reuse_env and os.environ.get("NSM_TEST_PG_DSN"):
        yield os.environ["NSM_TEST_PG_DSN"]
        return
    folder = Path(tempfile.mkdtemp(prefix="nsm-bench-pg-"))  # its own folder: postgres must enter it
    script = str(ROOT / "scripts" / "pg_throwaway.sh")
    env = os.environ | {"PG_FSYNC": "on" if fsync else "off", "PG_MAX_CONNECTIONS": str(max_connections)}
    try:
        out = subprocess.run(["bash", script, "start", str(folder), str(port)], capture_output=True, text=True,
                             check=True, env=env).stdout
        yield out.strip().split("=", 1)[1]
    finally:
        subprocess.run(["bash", script, "stop", str(folder)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(dsn: str) -> str:
    """A new, empty database on the server of `dsn`: every run starts from the same state."""
    from sqlalchemy import create_engine, text

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return dsn.rsplit("/", 1)[0] + f"/{name}"


def empty_table(url: str) -> None:
    """robot_telemetry emptied (its partitions kept): a run that follows another starts where it did,
    not on the bigger index the other left."""
    from sqlalchemy import text

    from nsm.telemetry.db import connect

    engine = connect(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE robot_telemetry"))
    engine.dispose()


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def start_service(db_url: str, token: str, *options: str) -> tuple[subprocess.Popen, str]:
    """`nsm serve` on a free localhost port with one fleet-wide token, once /healthz answers."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nsm.cli", "serve", "--db-url", db_url, "--token", token,
                             "--port", str(port), *options])
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("nsm serve did not start")
