"""How far off the cube a grasp may land and still carry it: the scripted expert planning from
a cube displaced along the arm's reach (radial) or across it (tangential), or along the line its
jaws close on (fixed to moving jaw) or across that line, or turned (its wrist roll then off the
cube's heading), physics only.

A learned policy imitates the expert with some error in where it thinks the cube is; this
measures which errors the expert's own grasp survives, so a recipe can aim its demonstrations
at the middle of that window. The expert plans in a mirror of the world that holds the
displaced cube (as the ROS path's expert plans from the published pose); the arm then runs
the plan in the true world through the safety filter, and the scene's check scores it.

    .venv/bin/python bench/grasp_tolerance.py [--seeds 20] [--first 1000] [--cm=-2,-1.5,-1,-0.5,0.5,1,1.5,2]
                                             [--degrees=-30,-20,-10,10,20,30]
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


def axis(direction: str, pose: np.ndarray, expert: PickPlaceExpert) -> np.ndarray:
    """The unit xy vector of a displacement `direction` (DIRECTIONS) for the cube at `pose`."""
    if direction in ("radial", "tangential"):
        along = pose[:2] / np.hypot(*pose[:2])
    else:
        expert.reset()  # the plan for the true cube: where its jaws close
        along = expert.jaw[:2]
    return np.array([-along[1], along[0]]) if direction in ("tangential", "across_jaw") else along


def successes(contract, world: SimScene, mirror: SimScene, seeds: range, direction: str, amount: float) -> int:
    """Episodes carried with the cube `amount` off where the expert's plan aims, in `direction`
    (metres; radial: away from the base; tangential: counter-clockwise; jaw: toward the moving
    jaw; across_jaw: the jaw axis turned a quarter counter-clockwise), or turned `amount` rad
    counter-clockwise of the heading the plan grasps at (heading)."""
    expert = PickPlaceExpert(contract, mirror)
    wins = 0
    for seed in seeds:
        world.reset(seed)
        mirror.reset(seed)
        pose = world.cube_qpos()  # then what the expert believes: the true cube is +amount from it
        if direction == "heading":
            believed = world.cube_pose()[1] - amount
            pose[3:7] = [np.cos(believed / 2), 0.0, 0.0, np.sin(believed / 2)]
        else:
            pose[:2] -= amount * axis(direction, pose, expert)
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
    parser.add_argument("--degrees", default="-30,-20,-10,10,20,30",
                        help="headings tried: the cube turned this far from the one the plan grasps at")
    args = parser.parse_args()
    contract = load_contract("so101")
    world, mirror = SimScene(contract, args.first), SimScene(contract, args.first)
    seeds = range(args.first, args.first + args.seeds)
    results = {"seeds": f"{seeds.start}..{seeds.stop - 1}", "episodes": args.seeds,
               "cube_off_the_plan": "+: away from the base (radial), counter-clockwise (tangential), toward the "
                                    "moving jaw (jaw), the jaw axis turned counter-clockwise (across_jaw), the "
                                    "cube turned counter-clockwise of the plan's heading (heading_deg)",
               "none": successes(contract, world, mirror, seeds, "radial", 0.0)}
    for direction in DIRECTIONS:
        results[f"{direction}_cm"] = {}
        for cm in (float(v) for v in args.cm.split(",")):
            results[f"{direction}_cm"][f"{cm:+g}"] = wins = successes(contract, world, mirror, seeds, direction, cm / 100)
            print(f"cube {cm:+g} cm {direction} off the plan: {wins}/{args.seeds}", flush=True)
    results["heading_deg"] = {}
    for deg in (float(v) for v in args.degrees.split(",")):
        results["heading_deg"][f"{deg:+g}"] = wins = successes(contract, world, mirror, seeds, "heading", np.radians(deg))
        print(f"cube turned {deg:+g} degrees off the plan's heading: {wins}/{args.seeds}", flush=True)
    print(f"wrote {write_result('grasp_tolerance', results)}")


if __name__ == "__main__":
    main()
