"""How far off the cube a grasp may land and still carry it: the scripted expert planning from
a cube displaced along the arm's reach (radial) or across it (tangential), or along the line its
jaws close on (fixed to moving jaw) or across that line, physics only.

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

DIRECTIONS = ("radial", "tangential", "jaw", "across_jaw")


def successes(contract, world: SimScene, mirror: SimScene, seeds: range, direction: str, metres: float) -> int:
    """Episodes carried with the cube `metres` off where the expert's plan aims, in `direction`
    (radial: away from the base; tangential: counter-clockwise; jaw: toward the moving jaw;
    across_jaw: the jaw axis turned a quarter counter-clockwise)."""
    expert = PickPlaceExpert(contract, mirror)
    wins = 0
    for seed in seeds:
        world.reset(seed)
        mirror.reset(seed)
        pose = world.cube_qpos()
        if direction in ("radial", "tangential"):
            axis = pose[:2] / np.hypot(*pose[:2])
        else:
            expert.reset()  # the plan for the true cube: where its jaws close
            axis = expert.jaw[:2]
        if direction in ("tangential", "across_jaw"):
            axis = np.array([-axis[1], axis[0]])
        pose[:2] -= metres * axis  # the expert believes the cube there; the true one is +metres from it
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
               "cube_off_the_plan": "+: away from the base (radial), counter-clockwise (tangential), toward the "
                                    "moving jaw (jaw), the jaw axis turned counter-clockwise (across_jaw)",
               "none": successes(contract, world, mirror, seeds, "radial", 0.0)}
    for direction in DIRECTIONS:
        results[f"{direction}_cm"] = {}
        for cm in (float(v) for v in args.cm.split(",")):
            results[f"{direction}_cm"][f"{cm:+g}"] = wins = successes(contract, world, mirror, seeds, direction, cm / 100)
            print(f"cube {cm:+g} cm {direction} off the plan: {wins}/{args.seeds}", flush=True)
    print(f"wrote {write_result('grasp_tolerance', results)}")


if __name__ == "__main__":
    main()
