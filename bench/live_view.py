"""The live view beside the 30 Hz loop: `nsm demo` with `--view` off and on, alternated in one
run (same machine state for both), the loop's period p50/p99/max and the view's dropped
ticks. The view streams to Rerun's server (its own process), which buffers it for a viewer;
no browser renders it here (on a robot the viewer runs on the operator's machine).

    .venv/bin/python bench/live_view.py [--rounds 3] [--seconds 20] [--screenshot docs/live_view.png]
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from nsm.app.demo import Demo  # noqa: E402
from nsm.app.demo_settings import demo_config  # noqa: E402


def run(view: bool, seconds: float, folder: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=folder))
    demo = Demo(demo_config(seconds=seconds, out=out, db_url=f"sqlite:///{out / 'telemetry.db'}", view=view,
                            view_port=19190, view_grpc_port=19876))
    try:
        s = demo.run()
    finally:
        demo.close()
    return {"periods_ms": s.period_ms, "view_dropped": s.view_dropped, "frames_dropped": s.dropped_frames}


def summary(runs: list[dict]) -> dict:
    periods = np.concatenate([r["periods_ms"] for r in runs])
    return {"ticks": int(len(periods)), "p50_ms": round(float(np.percentile(periods, 50)), 2),
            "p99_ms": round(float(np.percentile(periods, 99)), 2), "max_ms": round(float(periods.max()), 2),
            "p99_per_round_ms": [round(float(np.percentile(r["periods_ms"], 99)), 2) for r in runs],
            "view_dropped": sum(r["view_dropped"] for r in runs), "frames_dropped": sum(r["frames_dropped"] for r in runs)}


def screenshot(path: Path, seconds: float, folder: Path) -> None:
    """A screenshot of the live view while a run is on (Debian's chromium through Playwright),
    taken after the measured rounds so no browser ran beside them."""
    import shutil
    import threading
    import time

    from playwright.sync_api import sync_playwright

    out = Path(tempfile.mkdtemp(dir=folder))
    demo = Demo(demo_config(seconds=seconds, out=out, db_url=f"sqlite:///{out / 'telemetry.db'}", view=True,
                            view_port=19190, view_grpc_port=19876))
    runner = threading.Thread(target=demo.run)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                        args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            runner.start()
            page.goto("http://127.0.0.1:19190/?url=rerun%2Bhttp://127.0.0.1:19876/proxy")
            time.sleep(seconds * 0.8)
            page.screenshot(path=str(path))
            browser.close()
        runner.join()
    finally:
        demo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--screenshot", type=Path, help="afterwards, a PNG of the live view during one more run")
    a = parser.parse_args()
    runs: dict[str, list] = {"view off": [], "view on": []}
    with tempfile.TemporaryDirectory() as folder:
        for k in range(a.rounds):
            for view in (False, True):
                runs["view on" if view else "view off"].append(run(view, a.seconds, Path(folder)))
                print(f"round {k + 1}/{a.rounds} view {'on' if view else 'off'}: p99 "
                      f"{np.percentile(runs['view on' if view else 'view off'][-1]['periods_ms'], 99):.2f} ms", flush=True)
        if a.screenshot:
            screenshot(a.screenshot, a.seconds, Path(folder))
    results = {name: summary(r) for name, r in runs.items()}
    results["setup"] = (f"nsm demo (scripted expert, 2 sim cameras rendered in their own processes, HDF5 recorder, "
                        f"SQLite telemetry), {a.seconds:g} s per run, {a.rounds} rounds off/on alternated; the view "
                        "streams to `rerun --serve-web` on localhost, no browser connected")
    print(results)
    print(f"wrote {write_result('live_view', results)}")


if __name__ == "__main__":
    main()
