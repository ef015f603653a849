"""Where a policy closes its gripper, against the cube: the recorded episodes of `nsm eval`
(or `nsm sim collect`) read back, the grasp point put where the arm was by forward kinematics.

Twenty episodes' success count moves by +-4 between two trainings of one recipe; the grasp
error is a measurement per episode and says *how* a model misses. For each episode: the
moment the gripper command first closes (below CLOSING after reaching OPENED), the grasp
point there (the measured joints and the commanded ones) minus the cube's centre, in cm, and
the wrist roll (its sign: which side the cube is held from) beside the roll the scripted expert
plans for that seed's cube; the episodes whose gripper never closes (the arm stalls above the
cube). Per folder: the mean error, how the commanded grasp follows the cube — the slope of the
error against the cube's position (0: it follows; -1: it ignores the cube; one model's own gain
error) — and whether the roll follows the cube's heading: its mean distance from the expert's,
modulo a quarter turn (the jaws hold a cube across either pair of faces, from either side),
against the best one fixed roll could do. A model that does not see the heading does no better
than the fixed roll.

    .venv/bin/python bench/learned_grasps.py W/eval-onnxruntime [OTHER/eval-onnxruntime ...] \
        [--demos W/collect/episodes]
"""
import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, add_to_result, write_result  # noqa: E402
from nsm.contract import load_contract  # noqa: E402
from nsm.recording.episodes import episode_files  # noqa: E402
from nsm.sim.expert import PickPlaceExpert  # noqa: E402
from nsm.sim.ik import TopDownIK  # noqa: E402
from nsm.sim.scene import SimScene, build_model  # noqa: E402

OPENED, CLOSING = 0.95, 0.7  # rad of the gripper command: open around the cube, then closing on it


def first_seed(folder: Path) -> int:
    """eval.json's first seed; episodes without one (a collection) start at seed 0."""
    meta = folder / "eval.json"
    return int(json.loads(meta.read_text())["seeds"].split("..")[0]) if meta.is_file() else 0


def closing_step(gripper: np.ndarray) -> int | None:
    """The step at which the gripper command first closes after opening; None if it never does."""
    opened = np.nonzero(gripper > OPENED)[0]
    closing = np.nonzero(gripper[opened[0]:] < CLOSING)[0] + opened[0] if len(opened) else []
    return int(closing[0]) if len(closing) else None


def follows(cube: np.ndarray, error: np.ndarray) -> dict:
    """The error's slope against the cube's position and their correlation (None for an error
    that does not vary: the expert's)."""
    slope = float(np.polyfit(cube, error, 1)[0])
    corr = float(np.corrcoef(cube, error)[0, 1]) if np.ptp(error) > 1e-3 and np.ptp(cube) > 0 else None
    return {"slope": round(slope, 2), "corr": None if corr is None else round(corr, 2)}


def grasps(folder: Path, contract, ik: TopDownIK) -> dict:
    seed0, rows, never = first_seed(folder), [], []
    for path in episode_files(folder):
        k = int(path.stem.split("_")[1])
        with h5py.File(path) as f:
            qpos, action, success = f["observations/qpos"][:], f["action"][:], f.attrs.get("success")
        scene = SimScene(contract, seed0 + k)
        cube = scene.cube_pose()[0]
        t = closing_step(action[:, -1])
        if t is None:
            never.append(k)
            continue
        rows.append({"episode": k, "success": None if success is None else bool(success),
                     "cube_cm": (100 * cube).round(2).tolist(),
                     "measured_cm": (100 * (ik.grasp_point(qpos[t, :5]) - cube)).round(2).tolist(),
                     "commanded_cm": (100 * (ik.grasp_point(action[t, :5]) - cube)).round(2).tolist(),
                     "cube_toward_moving_jaw_cm": round(float(100 * cube_along_jaws(ik, qpos[t, :5], cube)), 2),
                     "wrist_roll_deg": round(float(np.degrees(action[t, 4])), 1),
                     "expert_roll_deg": round(expert_roll(contract, scene), 1),
                     "seconds": round(t / contract.fps, 2)})
    return summary(rows, never)


def cube_along_jaws(ik: TopDownIK, q: np.ndarray, cube: np.ndarray) -> float:
    """Where the cube lies from the grasp point along the gripper's own jaw line (m, horizontal; +:
    toward the moving jaw): the expert's grasp survives 0..+2 cm but not 5 mm toward the fixed
    jaw (bench/grasp_tolerance.py)."""
    jaw = ik.jaw_axis(q)[:2]
    return float((cube - ik.grasp_point(q))[:2] @ (jaw / np.linalg.norm(jaw)))


def expert_roll(contract, scene) -> float:
    """The wrist roll (degrees) at which the scripted expert closes on this scene's cube (its plan only)."""
    expert = PickPlaceExpert(contract, scene)
    expert.reset()
    return float(np.degrees(expert.plan[closing_step(expert.plan[:, -1]), 4]))


def off_quarter_turn(a: np.ndarray, b) -> np.ndarray:
    """|a - b| in degrees modulo 90: how far a roll is from holding the cube the way b does, on any face."""
    return np.abs((a - b + 45.0) % 90.0 - 45.0)


def summary(rows: list[dict], never: list[int]) -> dict:
    """A model's grasps summed up from its per-episode rows: bias (mean), scatter (sd), how it follows the cube."""
    out = {"episodes": len(rows) + len(never), "never_closed": never, "closed": len(rows)}
    if rows:
        measured = np.array([r["measured_cm"] for r in rows])
        commanded, cubes = np.array([r["commanded_cm"] for r in rows]), np.array([r["cube_cm"] for r in rows])
        out["mean_measured_cm"] = measured.mean(0).round(2).tolist()
        if len(rows) > 1:
            out["sd_measured_cm"] = measured.std(0, ddof=1).round(2).tolist()
        out["mean_abs_xy_cm"] = round(float(np.linalg.norm(measured[:, :2], axis=1).mean()), 2)
        if all("wrist_roll_deg" in r for r in rows):  # the side it holds the cube from (rows stored before lack it)
            roll = np.array([r["wrist_roll_deg"] for r in rows])
            out["wrist_roll_negative"] = {"closed": int((roll < 0).sum()),
                                          "succeeded": int(sum(r["success"] is True for r in rows if r["wrist_roll_deg"] < 0)),
                                          "of_successes": int(sum(r["success"] is True for r in rows))}
        if all("expert_roll_deg" in r for r in rows):
            roll, need = (np.array([r[key] for r in rows]) for key in ("wrist_roll_deg", "expert_roll_deg"))
            fixed = min(np.arange(-45.0, 45.0), key=lambda c: off_quarter_turn(need, c).mean())
            out["roll_off_the_cube_deg"] = {"model": round(float(off_quarter_turn(roll, need).mean()), 1),
                                            "best_fixed_roll": round(float(off_quarter_turn(need, fixed).mean()), 1)}
        if all("cube_toward_moving_jaw_cm" in r for r in rows):
            along = np.array([r["cube_toward_moving_jaw_cm"] for r in rows])
            won = np.array([r["success"] is True for r in rows])
            fixed_side = along < -0.3
            out["cube_toward_moving_jaw_cm"] = {
                "mean": round(float(along.mean()), 2),
                "closes_over_3mm_toward_the_fixed_jaw": int(fixed_side.sum()),
                "of_them_succeeded": int(won[fixed_side].sum()),
                "other_closes_succeeded": f"{int(won[~fixed_side].sum())}/{int((~fixed_side).sum())}"}
        if len(rows) > 2:
            out["commanded_vs_cube"] = {axis: follows(cubes[:, i], commanded[:, i]) for i, axis in enumerate("xy")}
    return out | {"per_episode": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="folders of episode_<n>.hdf5 (an `nsm eval` --out)")
    parser.add_argument("--demos", type=Path, help="the demonstrations' episodes, for the expert's own grasps")
    parser.add_argument("--add", action="store_true",
                        help="add these folders to the committed bench/results/learned_grasps.json instead of "
                             "replacing it (the earlier runs' folders may be gone)")
    args = parser.parse_args()
    folders = [*args.folders, *([args.demos] if args.demos else [])]
    for folder in folders:
        if not episode_files(folder):
            parser.error(f"{folder} has no episode_<n>.hdf5: pass an `nsm eval --out` or `nsm sim collect` episodes folder")
    contract = load_contract("so101")
    ik = TopDownIK(build_model(contract))
    results = {str(f): grasps(f, contract, ik) for f in folders}
    if args.add:  # the committed folders' summaries again from their stored rows (the same statistics for all)
        committed = json.loads((RESULTS / "learned_grasps.json").read_text())["results"]
        results = {k: summary(r["per_episode"], r["never_closed"]) for k, r in committed.items()} | results
    for folder, r in results.items():
        print(f"{folder}: closed {r['closed']}/{r['episodes']}, mean error {r.get('mean_measured_cm')} cm "
              f"(|xy| {r.get('mean_abs_xy_cm')}), follows the cube {r.get('commanded_vs_cube')}, "
              f"roll off the cube {r.get('roll_off_the_cube_deg')}")
    print(f"wrote {(add_to_result if args.add else write_result)('learned_grasps', results)}")


if __name__ == "__main__":
    main()
