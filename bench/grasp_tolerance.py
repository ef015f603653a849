"""How far off the cube a grasp may land and still carry it: the scripted expert planning from
a cube displaced along the arm's reach (radial) or across it (tangential), physics only.

A learned policy imitates the expert with some error in where it thinks the cube is; this
measures which errors the expert's own grasp survives, so a recipe can aim its demonstrations
at the middle of that window. The expert plans in a mirror of the world that holds the
displaced cube (as the ROS path's expert plans from the published pose); the arm then runs
the plan in the true world through the safety filter, and the scene's check scores it.

    .venv/bin/python bench/grasp_tolerance.py [--seeds 20] [--first 1000] [--cm=-2,-1.5,-1,-0.5,0.5,1,1.5,2]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_expert_plan, write_result  # noqa: E402
from nsm.contract import load_contract  # noqa: E402
from nsm.sim.expert import PickPlaceExpert  # noqa: E402
from nsm.sim.scene import SimScene  # noqa: E402


def successes(contract, world: SimScene, mirror: SimScene, seeds: range, radial: float, tangential: float) -> int:
    expert = PickPlaceExpert(contract, mirror)
    wins = 0
    for seed in seeds:
        world.reset(seed)
        mirror.reset(seed)
        pose = world.cube_qpos()
        reach = pose[:2] / np.hypot(*pose[:2])
        pose[:2] += radial * reach + tangential * np.array([-reach[1], reach[0]])
        mirror.set_cube_qpos(pose)
        expert.reset()
        run_expert_plan(contract, world, expert.plan)
        wins += world.success()
    return wins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first", type=int, default=1000, help="the held-out seeds nsm eval uses")
    parser.add_argument("--cm", default="-2,-1.5,-1,-0.5,0.5,1,1.5,2", help="displacements tried in each direction")
    args = parser.parse_args()
    contract = load_contract("so101")
    world, mirror = SimScene(contract, args.first), SimScene(contract, args.first)
    seeds = range(args.first, args.first + args.seeds)
    results = {"seeds": f"{seeds.start}..{seeds.stop - 1}", "episodes": args.seeds,
               "none": successes(contract, world, mirror, seeds, 0.0, 0.0), "radial_cm": {}, "tangential_cm": {}}
    for cm in (float(v) for v in args.cm.split(",")):
        for direction in ("radial", "tangential"):
            offset = (cm / 100, 0.0) if direction == "radial" else (0.0, cm / 100)
            results[f"{direction}_cm"][f"{cm:+g}"] = wins = successes(contract, world, mirror, seeds, *offset)
            print(f"cube {cm:+g} cm {direction} (+: away from the base / counter-clockwise): {wins}/{args.seeds}",
                  flush=True)
    print(f"wrote {write_result('grasp_tolerance', results)}")


if __name__ == "__main__":
    main()
