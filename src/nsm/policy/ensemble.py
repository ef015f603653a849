"""`nsm policy ensemble`: several trained models as one policy folder, their chunks averaged.

Models of one recipe trained with different seeds fail on different cubes; the mean of their
chunks fails on fewer (measured: two cpu-recipe models alone 15/40 and 9/40 held-out seeds,
together 26/40; bench/results/closed_loop.json). The folder is the first model, whole (LeRobot
still loads it as one policy), plus `members/<n>/` and `nsm_ensemble.json` listing them; the
ONNX export is one graph that runs every member and averages their normalized actions, so
ONNX Runtime, int8 and TensorRT take an ensemble as they take one model.
"""
import json
import shutil
from pathlib import Path

from nsm.errors import NsmError
from nsm.policy.image_input import FILE as IMAGE_INPUT_FILE
from nsm.policy.model_dir import ENSEMBLE_FILE, REQUIRED, PolicyDir

# what a model is and how it was trained (LeRobot's train_config.json, nsm train's record); not
# its checkpoints or exports
KEPT = (*REQUIRED, IMAGE_INPUT_FILE, "train_config.json", "training/train.json")


def make_ensemble(out: Path, models: list[Path]) -> PolicyDir:
    """`out`: the first of `models` plus the others as members (copied; the originals stay)."""
    if len(models) < 2:
        raise NsmError("an ensemble needs at least two policy folders (e.g. `nsm train --seed 1001` for a second)")
    if out.exists() and any(out.iterdir()):
        raise NsmError(f"{out} is not empty; choose a new folder for the ensemble")
    dirs = [PolicyDir(m) for m in models]
    if any(d.members for d in dirs):
        raise NsmError("give single models, not ensembles, to `nsm policy ensemble`")
    for d, dest in zip(dirs, [out, *(out / member(k) for k in range(1, len(dirs)))], strict=True):
        for f in [*KEPT, *(p.name for p in d.path.glob("policy_*processor*"))]:
            if (d.path / f).is_file():
                (dest / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(d.path / f, dest / f)
    try:
        return join_members(out, len(dirs), {"from": [str(m) for m in models]})
    except NsmError:
        shutil.rmtree(out)
        raise


def member(k: int) -> str:
    """Model k's folder inside an ensemble's (k >= 1; model 0 is the ensemble's folder itself)."""
    return f"members/{k}"


def join_members(out: Path, models: int, note: dict | None = None) -> PolicyDir:
    """List out/members/1.. in `out`'s nsm_ensemble.json and check they fit together: the same
    inputs, the same normalization stats (PolicyDir refuses them otherwise)."""
    (out / ENSEMBLE_FILE).write_text(json.dumps({"members": [member(k) for k in range(1, models)],
                                                 "merge": "mean of the normalized action chunks"} | (note or {}),
                                                indent=2) + "\n")
    return PolicyDir(out)
