"""Control-loop timing of `nsm demo` with 0, 1 and 2 rendered cameras, side by side.

The loop targets 30 Hz (33.3 ms). Cameras render on their own threads (software GL here),
so this measures how much they disturb the loop's period.

    .venv/bin/python bench/demo_loop.py [--seconds 10]
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from nsm.pipeline import Demo, DemoConfig  # noqa: E402

CASES = {"no camera": [], "wrist": ["wrist"], "front + wrist": ["front", "wrist"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    results = {}
    for label, cameras in CASES.items():
        with tempfile.TemporaryDirectory() as out:
            s = Demo(DemoConfig(seconds=args.seconds, out=Path(out), cameras=cameras)).run()
        p = s.period_ms
        results[label] = {
            "period_ms": {"p50": round(float(np.percentile(p, 50)), 2), "p99": round(float(np.percentile(p, 99)), 2),
                          "max": round(float(p.max()), 2)},
            "late_ticks_over_2ms": int((p > 1000 / 30 + 2).sum()), "ticks": len(p) + 1,
            "camera_fps": {k: round(v, 1) for k, v in s.camera_fps.items()},
            "telemetry_rows": s.telemetry.written,
        }
        print(f"{label:>14}: p50 {results[label]['period_ms']['p50']} ms, p99 {results[label]['period_ms']['p99']} ms, "
              f"max {results[label]['period_ms']['max']} ms, cameras {results[label]['camera_fps']}")
    print(f"wrote {write_result('demo_loop', results)}")


if __name__ == "__main__":
    main()
