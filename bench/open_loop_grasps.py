"""Does a learned policy know where to grasp when fed the expert's own observations, and does it
take its target from the images or copy the joint state?

In closed loop the learned models close their gripper 1.5-5 cm from the cube
(learned_grasps.json); this separates what a model sees from what the loop does with it. For
each expert episode of held-out seeds (`nsm sim collect --seed 1000 --episodes 20`) the
observation LEAD steps before the expert closes its gripper goes through the robot's runtime
input path into the model (ONNX Runtime), and the chunk's action at the close (index LEAD) is
put through forward kinematics and compared with the expert's own grasp point: the open-loop
grasp error. Then the same observation with one joint of the state offset by 0.05 rad, the
images unchanged: the share of that offset the predicted grasp follows (0: the images decide
where to go; 1: the state is copied into the target, so an arm that drifted stays off).
And which way the wrist turns: the expert holds the cube from whichever side needs less roll,
so near +-90 degrees two cubes that look alike are grasped half a turn apart, and it commits
to a side in its first move from home. The first chunk (from the episode's first observation)
is compared with the expert's first second: a model that turns the other way is counted.

    .venv/bin/python bench/open_loop_grasps.py --demos HELDOUT/episodes MODEL [MODEL ...] [--add]
"""
import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_to_result, write_result  # noqa: E402
from learned_grasps import closing_step  # noqa: E402
from nsm.contract import Observation, load_contract  # noqa: E402
from nsm.policy.export import ensure_onnx_export  # noqa: E402
from nsm.policy.lerobot_policy import LeRobotChunkPolicy  # noqa: E402
from nsm.policy.model_dir import PolicyDir  # noqa: E402
from nsm.recording.episodes import episode_files  # noqa: E402
from nsm.sim.ik import TopDownIK  # noqa: E402
from nsm.sim.scene import build_model  # noqa: E402

OFFSET = 0.05  # rad put into one joint of the state
OFFSET_JOINTS = (0, 1, 2)  # shoulder pan (sideways), shoulder lift and elbow (along the reach)


def errors_summary(errors: list) -> dict:
    e = np.array(errors)
    return {"mean_cm": e.mean(0).round(2).tolist(), "sd_cm": e.std(0, ddof=1).round(2).tolist(),
            "mean_abs_xy_cm": round(float(np.linalg.norm(e[:, :2], axis=1).mean()), 2)}


def measure(model: Path, demos: Path, ik: TopDownIK, joint_names: list[str]) -> dict:
    ensure_onnx_export(PolicyDir(model))  # as nsm eval does: the robot's default backend
    chunk = PolicyDir(model).features.chunk_size
    leads = (0, chunk // 3, 2 * chunk // 3)
    policy = LeRobotChunkPolicy(model, "onnxruntime", threads=2)
    errors = {lead: [] for lead in leads}
    followed = {j: [] for j in OFFSET_JOINTS}
    rolls = []  # (the expert's, the model's) turn of the wrist roll over the first chunk
    for path in episode_files(demos):
        with h5py.File(path) as f:
            qpos, action, images = f["observations/qpos"][:], f["action"][:], f["observations/images"]
            first = policy.predict_chunk(Observation(0, 0.0, qpos[0], {c: images[c][0] for c in images}))
            rolls.append((action[chunk - 1, 4] - qpos[0, 4], first[-1, 4] - qpos[0, 4]))
            t = closing_step(action[:, -1])
            expert = ik.grasp_point(action[t, :5])
            for lead in leads:
                obs = Observation(t - lead, (t - lead) / 30, qpos[t - lead], {c: images[c][t - lead] for c in images})
                predicted = policy.predict_chunk(obs)[lead, :5]
                errors[lead].append(100 * (ik.grasp_point(predicted) - expert))
                if lead != leads[1]:
                    continue
                for j in OFFSET_JOINTS:  # the state offset, the images as they were
                    state = qpos[t - lead].copy()
                    state[j] += OFFSET
                    moved = policy.predict_chunk(Observation(obs.step, obs.stamp, state, obs.images))[lead, :5]
                    shift = ik.grasp_point(moved) - ik.grasp_point(predicted)
                    target = action[t, :5].copy()
                    target[j] += OFFSET  # where the grasp would go had the arm really been offset
                    whole = ik.grasp_point(target) - expert
                    followed[j].append(float(shift @ whole / (whole @ whole)))
    return {"episodes": len(errors[0]), "chunk": chunk,
            "open_loop_error_by_lead": {str(lead): errors_summary(e) for lead, e in errors.items()},
            f"follows_a_{OFFSET}_rad_state_offset": {joint_names[j]: round(float(np.mean(f)), 2)
                                                      for j, f in followed.items()},
            "wrist_roll_after_the_first_chunk": roll_summary(np.degrees(np.array(rolls)))}


def roll_summary(turns: np.ndarray) -> dict:
    """(expert, model) turns of the wrist roll in degrees: the sides chosen, and how much of the
    expert's turn the model makes (1: all of it)."""
    return {"expert_turns_negative": int((turns[:, 0] < 0).sum()), "model_turns_negative": int((turns[:, 1] < 0).sum()),
            "model_turns_the_other_way": int((np.sign(turns[:, 0]) != np.sign(turns[:, 1])).sum()),
            "expert_turn_deg_range": [round(float(turns[:, 0].min()), 1), round(float(turns[:, 0].max()), 1)],
            "model_share_of_the_turn": round(float(np.mean(turns[:, 1] / turns[:, 0])), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="policy folders (nsm train --out)")
    parser.add_argument("--demos", type=Path, required=True,
                        help="expert episodes of held-out seeds (nsm sim collect --seed 1000 ... --out D: D/episodes)")
    parser.add_argument("--add", action="store_true",
                        help="add these models to the committed bench/results/open_loop_grasps.json")
    args = parser.parse_args()
    contract = load_contract("so101")
    ik = TopDownIK(build_model(contract))
    results = {}
    for model in args.models:
        results[str(model)] = measure(model, args.demos, ik, contract.joint_names)
        print(str(model), json.dumps(results[str(model)]), flush=True)
    print(f"wrote {(add_to_result if args.add else write_result)('open_loop_grasps', results)}")


if __name__ == "__main__":
    main()
