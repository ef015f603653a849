"""lerobot-train's step on this CPU as `nsm train` runs it, one model against N side by side
(`nsm train --models N`), each against one other choice, in one run on one dataset:
`--vary bf16` fp32 against bf16 mixed precision (bench/results/train_step.json),
`--vary in-memory` LeRobot's dataset reader against items from memory (train_step_in_memory.json).

Why: the cpu preset trains with bf16 autocast where the CPU computes bfloat16, with the dataset
held in memory where it fits, and `--models N` trains its models at once with the cores split
between them; this measures those choices on the machine at hand (lerobot-train's own updt_s /
data_s, the first logged point left out as warm-up) and predicts the preset's minutes from them.

    .venv/bin/nsm sim collect --episodes 50 --out runs/collect
    .venv/bin/python bench/train_step.py --dataset runs/collect/lerobot [--vary in-memory] [--models 3]
"""
import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from nsm.policy.train import PRESETS, cores, cpu_computes_bf16, member_folder, train_models  # noqa: E402

VARIED = {"bf16": "bf16", "in-memory": "in_memory"}  # --vary: train_act's argument


def logged(folder: Path, field: str) -> list[float]:
    """One field of lerobot-train's log lines (e.g. updt_s) for one model, warm-up point dropped."""
    return [float(v) for v in re.findall(rf"{field}:([0-9.]+)", (folder / "training" / "lerobot_train.log").read_text())][1:]


def measure(dataset: Path, models: int, option: str, value: bool, steps: int, work: Path) -> dict:
    """`option`: train_act's bf16 or in_memory, set to `value`."""
    out = work / f"models{models}-{option}-{value}"
    started = time.monotonic()
    train_models(dataset, out, models, steps=steps, device="cpu", **{option: value})
    wall = time.monotonic() - started
    data_s = statistics.mean(statistics.mean(logged(member_folder(out, k), "data_s")) for k in range(models))
    per_step = data_s + statistics.mean(statistics.mean(logged(member_folder(out, k), "updt_s")) for k in range(models))
    preset_steps = PRESETS["cpu"]["steps"]
    ran = json.loads((out / "training" / "train.json").read_text())  # bf16: False where the CPU lacks it
    return {"models": models, "bf16": ran["bf16"], "in_memory": ran["in_memory"], "data_s": round(data_s, 3),
            "step_s_each": round(per_step, 3),
            "model_steps_per_s": round(models / per_step, 2), "wall_s": round(wall, 1),
            f"predicted_min_for_{preset_steps}_steps": round(preset_steps * per_step / 60, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="A LeRobotDataset (nsm sim collect's lerobot/).")
    parser.add_argument("--models", type=int, default=3, help="Models side by side in the second pair of runs.")
    parser.add_argument("--steps", type=int, default=120, help="Steps each run trains (logged every 6 at 120).")
    parser.add_argument("--vary", choices=VARIED, default="bf16",
                        help="What each number of models is run without and with (the rest as the preset has it).")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nsm-train-step-") as tmp:
        for models in (1, args.models):
            for value in (False, True):
                rows.append(measure(args.dataset, models, VARIED[args.vary], value, args.steps, Path(tmp)))
                print(rows[-1], flush=True)
    base = rows[0]["model_steps_per_s"]
    for row in rows:
        row["throughput_vs_first"] = round(row["model_steps_per_s"] / base, 2)
    results = {"dataset": str(args.dataset), "steps": args.steps, "cores": cores(), "varied": args.vary,
               "cpu_computes_bf16": cpu_computes_bf16(), "runs": rows}
    name = "train_step" if args.vary == "bf16" else f"train_step_{VARIED[args.vary]}"
    print(f"wrote {write_result(name, results)}")


if __name__ == "__main__":
    main()
