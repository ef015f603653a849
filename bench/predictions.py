"""Live predictions: from a telemetry sample entering the Brain Worker to the hub receiving
the prediction it completed. Goal: p99 < 20 ms here.

    python bench/predictions.py [--seconds 60]

1. Models as a user makes them: `nsm sim telemetry` (240 s of robot time) and
   `nsm ai train` for battery and collision, in runs/bench-predictions (reused when there);
   their model cards' held-out metrics are copied into the result.
2. The hub: `nsm ai hub --record` in a process of its own (the operators' hub is another
   program), arrival times written per message.
3. Real time: unseen simulated telemetry replayed at the robot's rate (joint_states and
   joint_commands at 30 Hz, battery at 1 Hz) through BrainWorker -> HubClient (Socket.IO
   over localhost) with predictions also stored in SQLite. Latency = hub arrival - the
   moment the sample entered `feed()` (the message's timestamps.received).
4. Throughput: the same rows fed as fast as they go, hub attached: rows/s and predictions/s.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import nsm  # noqa: F401 - sets MUJOCO_GL before mujoco loads
from common import write_result
from nsm.ai.hub import HubClient
from nsm.ai.worker import BrainWorker, PredictionStore
from nsm.app.sim_telemetry import simulate_telemetry
from nsm.contract import load_contract

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "bench-predictions"
NSM = [sys.executable, "-m", "nsm.cli"]


def models() -> dict[str, Path]:
    db = f"sqlite:///{WORK / 'train.db'}"
    folders = {kind: WORK / kind for kind in ("battery", "collision")}
    if all((f / "model.onnx").is_file() for f in folders.values()):
        return folders
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run([*NSM, "sim", "telemetry", "--robot", "EP01", "--seconds", "240", "--battery-ah", "0.03",
                    "--db-url", db], check=True, cwd=WORK)
    for kind, folder in folders.items():
        subprocess.run([*NSM, "ai", "train", "--robot", "EP01", "--type", kind, "--db-url", db, "--out", str(folder)],
                       check=True, cwd=WORK)
    return folders


def start_hub(record: Path) -> tuple[subprocess.Popen, str]:
    record.unlink(missing_ok=True)
    port = 5000 + os.getpid() % 1000
    hub = subprocess.Popen([*NSM, "ai", "hub", "--port", str(port), "--record", str(record)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = hub.stderr.readline()  # "hub on http://... " once it listens
    if "hub on" not in line:
        raise RuntimeError(f"the hub did not start: {line}")
    return hub, f"http://127.0.0.1:{port}"


def arrivals(record: Path) -> list[tuple[float, dict]]:
    lines = record.read_text().splitlines() if record.exists() else []
    return [(r["arrived"], r["message"]["data"]) for r in map(json.loads, lines)]


def wait_for(record: Path, count: int, timeout: float = 30.0) -> list[tuple[float, dict]]:
    deadline = time.monotonic() + timeout
    while len(got := arrivals(record)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return got


def realtime(folders, url: str, record: Path, seconds: float) -> dict:
    rows = []
    simulate_telemetry(load_contract("so101"), lambda d, p, t: rows.append((d, t, p)), seconds, start=0.0, seed=99,
                       battery_ah=0.03)
    client = HubClient(url)
    store = PredictionStore(f"sqlite:///{WORK / 'live.db'}")
    worker = BrainWorker(list(folders.values()), hub=client, store=store)
    deadline = time.monotonic() + 10
    while not client.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    start = time.time() + 0.5
    for data_type, t, payload in rows:  # replay on the wall clock, as rows arrive from the robot
        delay = start + t - time.time()
        if delay > 0:
            time.sleep(delay)
        worker.feed("EP01", data_type, start + t, payload)
    got = wait_for(record, worker.stats.predictions)
    client.close()
    store.close()
    latency = np.array([arrived - data["timestamps"]["received"] for arrived, data in got]) * 1000
    per_model = {m: int(sum(d["model"] == m for _, d in got)) for m in folders}
    return {"seconds": seconds, "rows": worker.stats.rows, "predictions": worker.stats.predictions,
            "delivered": len(got), "per_model": per_model, "stored": store.written, "hub_dropped": client.dropped,
            "latency_ms": {"p50": round(float(np.percentile(latency, 50)), 3),
                           "p99": round(float(np.percentile(latency, 99)), 3), "max": round(float(latency.max()), 3)}}


def throughput(folders, url: str, record: Path, seconds: float) -> dict:
    rows = []
    simulate_telemetry(load_contract("so101"), lambda d, p, t: rows.append((d, t, p)), seconds, start=1e6, seed=98,
                       battery_ah=0.03)
    before = len(arrivals(record))
    client = HubClient(url, max_pending=100_000)
    deadline = time.monotonic() + 10
    while not client.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = BrainWorker(list(folders.values()), hub=client)
    started = time.perf_counter()
    for row in rows:
        worker.feed("EP01", *row)
    elapsed = time.perf_counter() - started
    got = wait_for(record, before + worker.stats.predictions)
    client.close()
    return {"rows": len(rows), "robot_seconds": seconds, "seconds": round(elapsed, 3),
            "rows_per_s": round(len(rows) / elapsed), "predictions_per_s": round(worker.stats.predictions / elapsed),
            "x_realtime": round(seconds / elapsed, 1), "delivered": len(got) - before, "hub_dropped": client.dropped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="robot time replayed in real time")
    args = parser.parse_args()
    folders = models()
    record = WORK / "hub.jsonl"
    hub, url = start_hub(record)
    try:
        live = realtime(folders, url, record, args.seconds)
        fast = throughput(folders, url, record, 120.0)
    finally:
        hub.send_signal(signal.SIGINT)
        hub.wait(timeout=20)
    results = {"goal": "p99 latency < 20 ms (sample entering the worker -> hub receives the prediction)",
               "met": live["latency_ms"]["p99"] < 20, "realtime": live, "throughput": fast,
               "models": {k: str(v.relative_to(ROOT)) for k, v in folders.items()},
               "held_out_metrics": {k: json.loads((v / "card.json").read_text())["metrics_held_out"]
                                    for k, v in folders.items()}}
    print(json.dumps(results, indent=2))
    print(f"wrote {write_result('predictions', results)}")


if __name__ == "__main__":
    main()
