"""Success rate of the scripted pick-and-place expert over many seeds (physics only, no cameras).

Each seed places the cube differently; the expert plans from the ground-truth pose and its
joint targets go through the safety filter into the simulated arm, as in `nsm sim collect`.

    .venv/bin/python bench/sim_expert.py [--seeds 50] [--first 0]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_expert_plan, write_result  # noqa: E402
from nsm.contract import load_contract  # noqa: E402
from nsm.sim.expert import PickPlaceExpert  # noqa: E402
from nsm.sim.scene import SimScene  # noqa: E402
from nsm.stats import wilson_interval  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--first", type=int, default=0)
    args = parser.parse_args()
    contract = load_contract("so101")
    scene = SimScene(contract, args.first)
    expert = PickPlaceExpert(contract, scene)
    outcomes, plan_s, clamped = [], [], 0
    for seed in range(args.first, args.first + args.seeds):
        scene.reset(seed)
        started = time.perf_counter()
        expert.reset()
        plan_s.append(time.perf_counter() - started)
        safety = run_expert_plan(contract, scene, expert.plan)
        outcomes.append(scene.success())
        clamped += safety.clamped
    low, high = wilson_interval(sum(outcomes), len(outcomes))
    results = {"seeds": f"{args.first}..{args.first + args.seeds - 1}", "successes": sum(outcomes),
               "episodes": len(outcomes), "success_rate": sum(outcomes) / len(outcomes),
               "wilson95": [round(low, 3), round(high, 3)],
              "failed_seeds": [args.first + i for i, ok in enumerate(outcomes) if not ok],
               "episode_s": round(len(expert.plan) / contract.fps, 2), "plan_ms_p50": round(1e3 * float(np.median(plan_s)), 1),
               "safety_clamped_commands": clamped}
    print(f"expert: {results['successes']}/{results['episodes']} ({100 * results['success_rate']:.0f}%, Wilson 95% "
          f"{100 * low:.0f}-{100 * high:.0f}%), plan {results['plan_ms_p50']} ms")
    print(f"wrote {write_result('sim_expert', results)}")


if __name__ == "__main__":
    main()
