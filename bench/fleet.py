"""How many robots one server holds: a simulated fleet through `nsm serve` vs straight into
PostgreSQL, side by side in one run, on this machine.

Each simulated robot sends the real telemetry mix at the real rate — joint_states,
joint_commands and loop_timing at 30 Hz, battery at 1 Hz (91 rows/s), the payloads of
nsm.telemetry.rows — in the robot writer's batches (every 1 s to the server, every 0.5 s
into a database: nsm.telemetry.writer), through nsm's own sinks:
HttpSink to `nsm serve` (one fleet-wide token), or DatabaseSink straight into PostgreSQL
(one connection per robot, as each robot's writer holds). Robots are threads in a few
client processes; the fleet grows step by step (`--service` / `--direct` sizes) and for
each size the run reports stored rows/s, ack latency p50/p99 (one flush: the POST until
its answer, or the COPY until its commit), spooled and lost rows. A robot whose write
fails spools the batch and sends it again, as on a robot; after each step every spool is
drained and the database is counted: lost = rows made - rows stored, duplicates = rows
stored twice. The two fleets' sizes are interleaved (through the server, then direct, size
by size: the VM's speed drifts over a run, and the table grows step by step for both alike;
until 2026-12-06 the direct ramp ran after the server's whole ramp, on every row it had
stored), `nsm serve` running only during its own steps. The table is not emptied between
steps. The server's rollup round in a step rolls up the robot-minutes noted since the last
round (nsm.telemetry.rollups): the direct step's before it (no server ran then) and its own
rows up to the round: one to two minutes of rows where a running fleet's round reads one. A size is
held when p99 < 250 ms, nothing was spooled and nothing lost.
A mode's ramp stops after the first size it does not hold. Each size runs 60 s, so that every
step holds one of the server's once-a-minute rollup rounds (nsm.telemetry.rollups), as a day does.

The robots' own CPU is on this machine too (on a fleet it is on the robots): the client
processes' CPU seconds are reported beside the server's (its worker processes included) and
PostgreSQL's, and all three per row made.

    .venv/bin/python bench/fleet.py [--workers 2] [--service 200,250,300,400,500,600] [--direct 200,250,300,400,500,600]

Starts its own PostgreSQL (fsync on; max_connections 1000, so that the direct fleet meets
the machine's limit rather than the default's 100 connections); writes bench/results/fleet.json.
"""
import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from nsm.telemetry.writer import DB_FLUSH_S, HTTP_FLUSH_S  # noqa: E402
from pg import fresh_database, postgres, start_service  # noqa: E402

RATES_HZ = {"joint_states": 30.0, "joint_commands": 30.0, "loop_timing": 30.0, "battery": 1.0}
FLUSH_S = {"service": HTTP_FLUSH_S, "direct": DB_FLUSH_S}  # the robot writer's batches to either target
RETRY_S = 1.0  # its retry_interval
WARMUP_S = 3.0  # flushes before this are not timed (connections opening)
P99_LIMIT_MS = 250.0
TOKEN = "fleet-bench"


def payloads() -> dict[str, bytes]:
    import orjson

    from nsm.telemetry import rows

    names = [f"joint_{i}" for i in range(6)]
    built = {"joint_states": rows.joint_states(names, [0.1] * 6, [0.0] * 6, [0.2] * 6),
             "joint_commands": rows.joint_commands(names, [0.1] * 6),
             "loop_timing": rows.loop_timing(0.0334, 0.004, 1), "battery": rows.battery(12.1, 0.4, 0.87)}
    return {k: orjson.dumps(v).decode() for k, v in built.items()}


def robot(robot_id: str, target: str, spool: Path, start_at: float, stop_at: float, out: list, lock) -> None:
    """One robot's writer: the rows due since the last flush, every flush interval (RETRY_S or
    the server's Retry-After after a failure); then its spool drained."""
    from nsm.telemetry.sinks import make_sink

    sink = make_sink(target, spool)
    flush_s = FLUSH_S["service" if target.startswith("http") else "direct"]
    text = payloads()
    due = dict.fromkeys(RATES_HZ, start_at)
    made, latencies, failed = 0, [], 0
    next_flush = start_at + random.uniform(0, flush_s)
    while True:
        time.sleep(max(0.0, next_flush - time.time()))
        now = min(time.time(), stop_at)
        batch = []
        for data_type, hz in RATES_HZ.items():
            while due[data_type] <= now:
                made += 1
                batch.append((robot_id, data_type, made, text[data_type], datetime.fromtimestamp(due[data_type], UTC)))
                due[data_type] += 1.0 / hz
        started = time.perf_counter()
        ok = sink.flush(batch)
        if now - start_at >= WARMUP_S:
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                failed += 1
        if now >= stop_at:
            break
        next_flush = time.time() + (flush_s if ok else max(RETRY_S, sink.retry_after))
    deadline = time.time() + 120
    while not sink.replay_spool() and time.time() < deadline:
        time.sleep(max(RETRY_S, sink.retry_after))
    with lock:
        out.append({"robot": robot_id, "made": made, "latencies": latencies, "failed": failed,
                    "spooled": sink.stats.spooled, "rejected": sink.stats.rejected, "error": sink.stats.last_error})


def client(robot_ids: list[str], target: str, spool: str, start_at: float, stop_at: float, results) -> None:
    """A client process: its robots as threads; sends their reports and its CPU seconds back."""
    os.environ["BACKEND_API_TOKEN"] = TOKEN
    out, lock = [], threading.Lock()
    threads = [threading.Thread(target=robot, args=(r, target, Path(spool) / r, start_at, stop_at, out, lock))
               for r in robot_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = os.times()
    results.put((out, cpu.user + cpu.system))


def proc_stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (the state is [0], the parent [1])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid`, of its children that exited (waited for) and of its live descendants
    (the server's worker processes; PostgreSQL's backends, the direct fleet's closing as it ends)."""
    try:
        fields = proc_stat(pid)
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:  # exited meanwhile: its time is in its parent's
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return own + sum(cpu_seconds(int(child)) for child in children)


def postmaster_pid(db_url: str) -> int:
    """The PostgreSQL server's process (on this machine): the parent of a backend."""
    from sqlalchemy import text

    from nsm.telemetry.db import make_engine

    engine = make_engine(db_url)
    with engine.connect() as conn:
        backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        parent = int(proc_stat(backend)[1])
    engine.dispose()
    return parent


def client_cost(url: str, posts: int = 300) -> dict:
    """CPU a robot spends on one second of its telemetry (a 91-row batch) sent to `nsm serve`:
    nsm's HttpSink (urllib3) and httpx.Client (the sink's client before), posts interleaved, the
    body built the same way (sinks.ingest_body) — what each simulated robot of the ramp costs."""
    import httpx

    from nsm.telemetry.sinks import INGEST_PATH, HttpSink, ingest_body

    os.environ["BACKEND_API_TOKEN"] = TOKEN
    text, now = payloads(), datetime.now(UTC)
    mix = [t for t, hz in RATES_HZ.items() for _ in range(int(hz))]
    sink = HttpSink(url, None)
    other = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    calls = {"nsm HttpSink (urllib3)": sink._write,
             "httpx.Client": lambda batch: other.post(INGEST_PATH, content=ingest_body(batch)).raise_for_status()}
    cpu = {name: [] for name in calls}
    for i in range(10 + posts):
        for k, (name, call) in enumerate(calls.items()):
            robot_id, seq = f"COST-{k}", i * len(mix)
            batch = [(robot_id, t, seq + j, text[t], now) for j, t in enumerate(mix)]
            started = time.thread_time()
            call(batch)
            if i >= 10:
                cpu[name].append(1e6 * (time.thread_time() - started))
    other.close()
    return {name: round(statistics.median(us)) for name, us in cpu.items()} | {"rows_per_post": len(mix)}


def run_fleet(mode: str, robots: int, target: str, db_url: str, seconds: float, processes: int, spool: Path,
              server_pid: int | None, pg_pid: int) -> dict:
    from sqlalchemy import text

    from nsm.telemetry.db import make_engine

    prefix = f"{mode[0].upper()}{robots}-"
    ids = [f"{prefix}{i:04d}" for i in range(robots)]
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 6.0  # every client imported and its robots waiting
    stop_at = start_at + seconds
    server_cpu = cpu_seconds(server_pid) if server_pid else 0.0
    pg_cpu = cpu_seconds(pg_pid)
    procs = [ctx.Process(target=client, args=(ids[i::processes], target, str(spool), start_at, stop_at, results))
             for i in range(processes)]
    for p in procs:
        p.start()
    reports, client_cpu = [], 0.0
    for _ in procs:
        out, cpu = results.get(timeout=seconds + 300)
        reports += out
        client_cpu += cpu
    for p in procs:
        p.join()
    server_cpu = (cpu_seconds(server_pid) - server_cpu) if server_pid else None
    pg_cpu = cpu_seconds(pg_pid) - pg_cpu
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored, distinct = conn.execute(text(
            "SELECT count(*), count(DISTINCT (robot_id, data_type, seq)) FROM robot_telemetry "
            "WHERE robot_id LIKE :p"), {"p": prefix + "%"}).one()
    engine.dispose()
    made = sum(r["made"] for r in reports)
    latencies = sorted(x * 1e3 for r in reports for x in r["latencies"])
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("inf")
    spooled = sum(r["spooled"] for r in reports)
    lost = made - distinct
    row = {"robots": robots, "rows_made": made, "offered_rows_per_s": round(made / seconds),
           "stored_rows_per_s": round(distinct / seconds),
           "ack_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
           "ack_ms_p99": round(p99, 1), "ack_ms_max": round(latencies[-1], 1) if latencies else None,
           "flushes": len(latencies), "failed_flushes": sum(r["failed"] for r in reports),
           "spooled_rows": spooled, "lost_rows": lost, "duplicate_rows": stored - distinct,
           "rejected_rows": sum(r["rejected"] for r in reports),
           "client_cpu_s": round(client_cpu, 1), "server_cpu_s": round(server_cpu, 1) if server_cpu else None,
           "postgres_cpu_s": round(pg_cpu, 1),
           "cpu_us_per_row": round(1e6 * (client_cpu + (server_cpu or 0.0) + pg_cpu) / made, 1),
           "errors": sorted({r["error"] for r in reports if r["error"]})[:3]}
    row["held"] = p99 < P99_LIMIT_MS and spooled == 0 and lost == 0 and row["duplicate_rows"] == 0
    print(f"{mode:8s} {robots:4d} robots: {row['stored_rows_per_s']:7d} rows/s  ack p50 {row['ack_ms_p50']} "
          f"p99 {row['ack_ms_p99']} ms  spooled {spooled}  lost {lost}  {'held' if row['held'] else 'NOT held'}  "
          f"CPU s client {row['client_cpu_s']} server {row['server_cpu_s']} postgres {row['postgres_cpu_s']}"
          + (f"  ({row['errors'][0]})" if row["errors"] else ""), flush=True)
    return row


def ramps(sizes: dict[str, list[int]], db_url: str, args, spool: Path) -> tuple[dict, dict | None]:
    """Both modes' ramps, interleaved size by size (service, then direct: the VM's speed drifts
    over a run); `nsm serve` runs only during its own steps. A mode stops after its first size not held."""
    steps: dict[str, list[dict]] = {"service": [], "direct": []}
    pg_pid, cost = postmaster_pid(db_url), None
    for robots in sorted(set(sizes["service"]) | set(sizes["direct"])):
        for mode in ("service", "direct"):
            if robots not in sizes[mode] or not all(s["held"] for s in steps[mode]):
                continue
            if mode == "direct":
                steps[mode].append(run_fleet(mode, robots, db_url, db_url, args.seconds, args.processes, spool,
                                             None, pg_pid))
            else:
                service, url = start_service(db_url, TOKEN, "--workers", str(args.workers))
                try:
                    if cost is None:
                        cost = client_cost(url)
                        print(f"client CPU us per 91-row post: {cost}", flush=True)
                    steps[mode].append(run_fleet(mode, robots, url, db_url, args.seconds, args.processes, spool,
                                                 service.pid, pg_pid))
                finally:
                    service.terminate()
                    service.wait()
    held = {mode: max((s["robots"] for s in runs if s["held"]), default=0) for mode, runs in steps.items()}
    return {mode: {"steps": runs, "largest_held": held[mode]} for mode, runs in steps.items()}, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="timed seconds per fleet size (60: one rollup round in each)")
    parser.add_argument("--service", default="200,250,300,400,500,600", help="fleet sizes through nsm serve")
    parser.add_argument("--direct", default="200,250,300,400,500,600", help="fleet sizes straight into PostgreSQL")
    parser.add_argument("--processes", type=int, default=4, help="client processes the robots are spread over")
    parser.add_argument("--workers", type=int, default=2, help="nsm serve --workers (one per core)")
    args = parser.parse_args()
    sizes = {m: [int(n) for n in getattr(args, m).split(",") if n] for m in ("service", "direct")}
    spool = Path(tempfile.mkdtemp(prefix="nsm-fleet-"))
    try:
        with postgres(55991, fsync=True, max_connections=1000, reuse_env=False) as dsn:
            modes, cost = ramps(sizes, fresh_database(dsn), args, spool)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    through, direct = modes["service"], modes["direct"]
    results = {"service": through, "direct": direct, "client_cpu_us_per_post": cost,
               "fleet_ratio": round(through["largest_held"] / direct["largest_held"], 2)
               if direct["largest_held"] else None,
               "criteria": {"ack_p99_ms_below": P99_LIMIT_MS, "spooled_rows": 0, "lost_rows": 0},
               "robot": {"rows_per_s": sum(RATES_HZ.values()), "flush_s": FLUSH_S, "mix_hz": RATES_HZ},
               "setup": {"seconds_per_size": args.seconds, "client_processes": args.processes,
                         "serve_workers": args.workers, "postgres": "fsync on, max_connections 1000, this machine"}}
    print(f"largest fleet held: {through['largest_held']} through nsm serve, {direct['largest_held']} direct")
    print(f"wrote {write_result('fleet', results)}")


if __name__ == "__main__":
    main()
