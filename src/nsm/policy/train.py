"""`nsm train`: ACT trained by LeRobot's own training script, offline, on a LeRobotDataset.

nsm does not re-implement training: it checks the dataset, runs `lerobot-train` (the
module `lerobot.scripts.lerobot_train`) in a child process with a preset sized for the
machine, follows its log for progress and the loss, and leaves a policy folder nsm loads
(`nsm policy export`, `nsm eval`, `nsm demo --policy`, the policy node):

    MODEL/                 config.json, model.safetensors, pre/post processors (LeRobot layout)
    MODEL/training/        LeRobot's output_dir: checkpoints/, train_config.json
    MODEL/training/loss.csv, loss.png, train.json   what nsm measured
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from nsm.contract import RobotContract, load_contract
from nsm.errors import NsmError
from nsm.policy.backbone_norm import NORMS
from nsm.policy.ensemble import join_members, member
from nsm.policy.image_input import FILE as IMAGE_INPUT_FILE
from nsm.policy.image_input import ImageInput
from nsm.policy.init import SMALL
from nsm.policy.lerobot_train_main import BACKBONE_ARG, IN_MEMORY_ARG, NOISE_ARG, NORM_ARG
from nsm.policy.model_dir import ACTION_KEY, IMAGE_PREFIX, STATE_KEY

# `cpu`: a small transformer and 1 s chunks, trained within about an hour on a 2-core machine
# (on 96x128 images: `nsm sim collect --image-size`). The ResNet18 starts from scratch (no
# ImageNet weights can be downloaded), so LeRobot's lr 1e-5 — tuned for a pretrained
# backbone — barely moves it in that budget: 1e-4 for the transformer and the backbone.
# `full`: LeRobot's ACT defaults (dim 512, 4+1 layers, chunk 100) for a GPU.
# Random shift (DrQ-style: every training frame moved up to 6% each way, independently per
# camera) because from-scratch vision from 50 demos learns the demos' cube positions rather
# than where the cube is relative to the gripper; LeRobot's own transform, set on its CLI.
# The lr stays constant (ACT's preset): annealing it to 0 over 12000 steps (LeRobot's
# cosine_annealing_with_warmup) lowered the final loss from 0.088 to 0.073 but succeeded on
# 0/20 held-out seeds against 4/20 — measured in bench/results/closed_loop.json (ablations).
# 8000 steps (~4 epochs of 50 demonstrations): 12000 lowered the loss (0.104 -> 0.088) and succeeded on 6/40
# held-out seeds against 17/40 (ablation /work/runs29), so more steps are not the missing lever here.
RANDOM_SHIFT = ('{"shift": {"weight": 1.0, "type": "RandomAffine", '
                '"kwargs": {"degrees": [0.0, 0.0], "translate": [0.06, 0.06]}}}')
# Noise on the training joint states (rad, sd per joint; `nsm train --state-noise`,
# nsm.policy.lerobot_train_main). Trained on clean states, the models copy the state's shoulder
# pan into their grasp target (77-85% of an offset put into the state alone, the images unchanged:
# bench/results/open_loop_grasps.json), so an arm that turned off the cube stays off. 0.05 rad
# halved that (40%) but succeeded on 8/20 held-out seeds, inside the clean recipe's spread over
# training seeds (4-9/20); 0.15 rad cut it to 4-5% and succeeded on 12/20 and 10/20 with training
# seeds 1000 and 1001 (9/20 and 4/20 without), 0.25 rad on 10/20: bench/results/closed_loop.json.
STATE_NOISE = 0.15
PRESETS = {
    "cpu": {"steps": 8000, "batch_size": 8, "policy": SMALL | {"chunk_size": 30, "n_action_steps": 30,
                                                                 "optimizer_lr": 1e-4, "optimizer_lr_backbone": 1e-4},
            "dataset": {"image_transforms.enable": "true", "image_transforms.max_num_transforms": 1,
                        "image_transforms.tfs": RANDOM_SHIFT},
            "state_noise": STATE_NOISE, "bf16": True},
    "full": {"steps": 100_000, "batch_size": 8, "policy": {"chunk_size": 100, "n_action_steps": 100}},
}
# `bf16`: LeRobot's mixed precision (`--policy.use_amp`: bfloat16 autocast, fp32 weights) where the
# CPU computes bfloat16 itself (AVX512-BF16 or AMX; elsewhere torch emulates it, not measured): a step of
# the cpu recipe 0.438 -> 0.319 s on 2 cores, 1.076 -> 0.726 s each with three models side by side.
# Models of several (`nsm train --models N`) train side by side on a CPU, the cores split between
# them: lerobot-train's small steps leave a second thread half idle, so three at once make 1.2-1.4x
# one model's steps per second (bench/results/train_step.json).
# The ResNet's BatchNorm learns while training (nsm.policy.lerobot_train_main): LeRobot's frozen one,
# never fitted, left the from-scratch backbone without normalization. Same recipe, data and seeds
# otherwise: 9/20 held-out seeds against 4/20 (bench/results/closed_loop.json). `--backbone-norm group`
# learns GroupNorm instead (nsm.policy.backbone_norm): three models side by side 25/40 held-out seeds, and 24/40
# with training seeds 1003-1005, against 25, 5 and 11/40 for three BatchNorm runs of the same demonstrations
# (7000, 7500, 9000 steps): a narrower spread on two runs, no higher ceiling, so the preset keeps BatchNorm
# until a third run agrees. Recorded in train.json ("trained": the BatchNorm).
BACKBONE_NORMS = {"batch": "trained", "group": "group"}
# lerobot-train logs `step:2K ... loss:0.286` every log_freq steps; its step is rounded
# (format_big_number: 1500-2499 all read "2K"), so the step is counted from the log lines
LOG_LINE = re.compile(r"step:\S+ .*?\bloss:(?P<loss>[0-9.]+)")
LOG_FILE = "lerobot_train.log"
RUN_FILE = "nsm_train_run.json"  # how the run was started: what `nsm train --resume` continues with


@dataclass
class TrainResult:
    model: Path
    steps: int
    seconds: float
    final_loss: float
    device: str
    dataset_episodes: int
    dataset_frames: int


def dataset_features(root: Path, repo_id: str, contract: RobotContract | None = None):
    """The dataset's metadata, or one error that says what is wrong with it (also: recorded
    for another robot than `contract` — the trained policy could not drive this one)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    if not (root / "meta" / "info.json").is_file():
        raise NsmError(f"{root} is not a LeRobotDataset (no meta/info.json); make one with `nsm sim collect` "
                       "or `nsm dataset convert`")
    meta = LeRobotDatasetMetadata(repo_id, root=root)
    if meta.total_episodes == 0 or meta.total_frames == 0:
        raise NsmError(f"dataset {root} has no episodes; record some first")
    missing = [k for k in (STATE_KEY, ACTION_KEY) if k not in meta.features]
    if missing:
        raise NsmError(f"dataset {root} lacks {', '.join(missing)}; ACT needs the joint state and the action")
    if not any(k.startswith(IMAGE_PREFIX) for k in meta.features):
        raise NsmError(f"dataset {root} has no camera (observation.images.*); ACT needs at least one")
    if contract is not None:
        names = list(meta.features[STATE_KEY].get("names") or [])
        if names != contract.joint_names:
            raise NsmError(f"dataset {root} has joints {names}, robot {contract.robot} has {contract.joint_names}; "
                           "train on episodes of this robot or pass its --robot")
        resized = ImageInput.read(root / "meta")  # the cameras' own sizes, when the dataset was downscaled
        for key, feature in meta.features.items():
            if key.startswith(IMAGE_PREFIX):
                cam, (h, w) = key.removeprefix(IMAGE_PREFIX), tuple(feature["shape"][:2])
                if resized is not None:
                    h, w = resized.camera_sizes[cam]
                spec = contract.camera(cam)  # an unknown camera is an error naming the known ones
                if (h, w) != (spec.height, spec.width):
                    raise NsmError(f"dataset {root}: camera {cam} is {w}x{h}, robot {contract.robot}'s is "
                                   f"{spec.width}x{spec.height}; the policy would not fit the robot's images")
    return meta


def lerobot_train_args(dataset: Path, repo_id: str, output_dir: Path, preset: str, steps: int, batch_size: int,
                       device: str, seed: int, num_workers: int, state_noise: float = 0.0,
                       bf16: bool = False, in_memory: bool = False, backbone_norm: str = "batch") -> list[str]:
    """The `lerobot-train` command line for this run."""
    policy = PRESETS[preset]["policy"]
    args = [f"--dataset.repo_id={repo_id}", f"--dataset.root={dataset}", "--policy.type=act",
            f"--policy.device={device}", "--policy.push_to_hub=false",
            # the ImageNet backbone weights would be downloaded: start the ResNet18 from scratch
            "--policy.pretrained_backbone_weights=null",
            *(f"--policy.{k}={v}" for k, v in policy.items()),
            *(f"--dataset.{k}={v}" for k, v in PRESETS[preset].get("dataset", {}).items()),
            f"--output_dir={output_dir}", "--job_name=nsm", f"--steps={steps}", f"--batch_size={batch_size}",
            f"--seed={seed}", f"--num_workers={num_workers}", f"--log_freq={log_freq(steps)}",
            f"--save_freq={max(1, steps // 4)}", "--env_eval_freq=0", "--wandb.enable=false"]
    if bf16:
        args.append("--policy.use_amp=true")
    if state_noise:
        args.append(f"{NOISE_ARG}{state_noise}")
    if in_memory:
        args.append(IN_MEMORY_ARG)
    if backbone_norm != "batch":
        args.append(f"{NORM_ARG}{backbone_norm}")
    return args


def fits_in_memory(meta, copies: int) -> bool:
    """Whether `copies` of the dataset's decoded frames (one per lerobot-train, or per data-loading
    worker: each decodes its own) take at most half of the memory available now (`--nsm-in-memory`,
    nsm.policy.lerobot_train_main)."""
    frame_bytes = sum(math.prod(meta.features[key]["shape"]) for key in meta.video_keys)
    try:
        available_kb = int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
    except (OSError, TypeError):
        return False
    return copies * meta.total_frames * frame_bytes <= available_kb * 1024 // 2


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic of its own (Linux's cpuinfo flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def train_act(dataset: Path, out: Path, repo_id: str = "local/nsm_sim_pick_place", preset: str = "cpu",
              steps: int | None = None, batch_size: int | None = None, device: str = "auto", seed: int = 1000,
              num_workers: int = 0, on_progress: Callable[[int, int, float], None] | None = None,
              robot: str = "so101", state_noise: float | None = None, backbone: Path | None = None,
              models: int = 1, threads: int | None = None, bf16: bool | None = None,
              in_memory: bool | None = None, backbone_norm: str = "batch") -> TrainResult:
    """Train ACT on `dataset` into the policy folder `out`; `on_progress(step, steps, loss)` per log line.
    `state_noise` (rad): the sd of the noise put on the training joint states (default: the preset's).
    `backbone`: a safetensors file of ACT's ResNet weights to start from instead of from scratch.
    `models`: recorded for `--resume` when this is the first of train_models' models.
    `threads`: torch's threads in lerobot-train (default: torch's own, one per core).
    `bf16`: mixed precision where the CPU computes bfloat16 (default: the preset's; PRESETS' note).
    `in_memory`: lerobot-train's items from the dataset held in memory (default: where it fits).
    `backbone_norm`: how the ResNet normalizes, `batch` or `group` (nsm.policy.backbone_norm)."""
    if preset not in PRESETS:
        raise NsmError(f"unknown preset '{preset}'; use one of {', '.join(PRESETS)}")
    if out.exists() and any(p.name != "members" for p in out.iterdir()):  # members/: the run's other models
        raise NsmError(f"{out} is not empty; choose a new folder for the model (or `nsm train --resume --out {out}` "
                       "to continue a run that stopped)")
    meta = dataset_features(dataset, repo_id, load_contract(robot))
    if state_noise is None:
        state_noise = PRESETS[preset].get("state_noise", 0.0)
    if state_noise < 0:
        raise NsmError(f"--state-noise {state_noise} is negative; give the noise's sd in rad (0: none)")
    if backbone_norm not in NORMS:
        raise NsmError(f"--backbone-norm {backbone_norm}: use one of {', '.join(NORMS)}")
    if backbone is not None and not backbone.is_file():
        raise NsmError(f"backbone weights {backbone} not found; give a safetensors file of ACT's ResNet state dict")
    device = pick_device(device)
    run = {"dataset": str(dataset), "repo_id": repo_id, "preset": preset,
           "steps": steps or PRESETS[preset]["steps"], "batch_size": batch_size or PRESETS[preset]["batch_size"],
           "device": device, "seed": seed, "num_workers": num_workers, "state_noise_rad": state_noise,
           "backbone": str(backbone) if backbone else None, "backbone_norm": backbone_norm, "models": models,
           "bf16": (PRESETS[preset].get("bf16", False) if bf16 is None else bf16) and device == "cpu"
           and cpu_computes_bf16(),
           "in_memory": fits_in_memory(meta, models * max(1, num_workers)) if in_memory is None else in_memory}
    args = lerobot_train_args(dataset, repo_id, out / "training", preset, run["steps"], run["batch_size"],
                              run["device"], seed, num_workers, state_noise, run["bf16"], run["in_memory"],
                              backbone_norm)
    if backbone is not None:
        args.append(f"{BACKBONE_ARG}{backbone.resolve()}")
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).write_text(json.dumps(run, indent=2))
    return _run_lerobot_train(out, run, args, meta, [], on_progress, threads)


def member_folder(out: Path, k: int) -> Path:
    """Where model k of a `nsm train --models N` run lives: the first is OUT itself (nsm.policy.ensemble)."""
    return out if k == 0 else out / member(k)


def train_models(dataset: Path, out: Path, models: int = 1, seed: int = 1000,
                 on_progress: Callable[[int, int, int, float], None] | None = None, **train) -> list[TrainResult]:
    """`models` models of one recipe with training seeds seed, seed+1, ...: the first in `out`,
    the others in out/members/<k>, made one ensemble whose chunk is the mean of theirs
    (nsm.policy.ensemble). On a CPU they train side by side, the cores split between them (PRESETS'
    note). `on_progress(k, step, steps, loss)` for model k; `train`: train_act's other arguments."""
    if models < 1:
        raise NsmError(f"--models {models}: train at least one model")
    results = _side_by_side(list(range(models)), lambda k, threads, progress: train_act(
        dataset, member_folder(out, k), seed=seed + k, models=models, on_progress=progress, threads=threads, **train),
        pick_device(train.get("device", "auto")), on_progress)
    if models > 1:
        join_members(out, models)
    return results


def resume_models(out: Path, on_progress: Callable[[int, int, int, float], None] | None = None) -> list[TrainResult]:
    """Continue `out`'s `nsm train` run that stopped: each model it had not finished from its last
    checkpoint (resume_act), the models of `--models N` it had not started from the beginning,
    side by side as train_models runs them. `on_progress(k, step, steps, loss)` for model k."""
    started = next((f for f in (out / RUN_FILE, out / "training" / RUN_FILE) if f.is_file()), None)
    if started is None:
        raise NsmError(f"{out} holds no run started by `nsm train` (no {RUN_FILE}); start one with `nsm train`")
    run = json.loads(started.read_text())
    models = run.get("models", 1)
    todo = [k for k in range(models) if not (member_folder(out, k) / "training" / "train.json").is_file()]
    if not todo:
        raise NsmError(f"{out} finished training; to train more, start a new folder with `nsm train`")

    def again(k: int, threads: int | None, progress) -> TrainResult:
        folder = member_folder(out, k)
        if (folder / RUN_FILE).is_file() and (folder / "training" / "checkpoints" / "last").is_dir():
            return resume_act(folder, progress, threads)
        for item in folder.iterdir() if folder.is_dir() else []:  # not started, or stopped before its first
            if item.name != "members":                             # checkpoint: nothing of it to keep
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        return train_act(Path(run["dataset"]), folder, run["repo_id"], run["preset"], run["steps"], run["batch_size"],
                         run["device"], run["seed"] + k, run["num_workers"], progress,
                         state_noise=run["state_noise_rad"], models=models, threads=threads,
                         backbone=Path(run["backbone"]) if run.get("backbone") else None,
                         backbone_norm=run.get("backbone_norm", "batch"))

    results = _side_by_side(todo, again, run["device"], on_progress)
    if models > 1:
        join_members(out, models)
    return results


def _side_by_side(models: list[int], train: Callable[..., TrainResult], device: str,
                  on_progress: Callable[[int, int, int, float], None] | None) -> list[TrainResult]:
    """Train each model k of `models` (train(k, threads, on_progress(step, steps, loss))): on a CPU
    all at once, the cores split between them; on a GPU one after another. The first error is
    raised once all stopped."""
    def progress(k: int):
        return None if on_progress is None else lambda step, steps, loss: on_progress(k, step, steps, loss)

    if len(models) == 1 or device != "cpu":
        return [train(k, None, progress(k)) for k in models]
    threads = max(1, cores() // len(models))
    with ThreadPoolExecutor(len(models)) as pool:  # leaving it waits for every model
        futures = [pool.submit(train, k, threads, progress(k)) for k in models]
    return [f.result() for f in futures]


def resume_act(out: Path, on_progress: Callable[[int, int, float], None] | None = None,
               threads: int | None = None) -> TrainResult:
    """Continue `out`'s interrupted `nsm train` from its last checkpoint (LeRobot's `--resume`:
    weights, optimizer, step and RNG state), with the settings it was started with; the loss
    curve keeps the logged points up to that checkpoint. `out` holds an unfinished run
    (resume_models finds which model of a run that is)."""
    run = json.loads((out / RUN_FILE).read_text())
    last = out / "training" / "checkpoints" / "last"
    done = json.loads((last / "training_state" / "training_step.json").read_text())["step"]
    logged = (out / LOG_FILE).read_text().splitlines() if (out / LOG_FILE).is_file() else []
    losses = _losses(logged, run["steps"])[:done // log_freq(run["steps"])]
    run["resumed_at_steps"] = [*run.get("resumed_at_steps", []), done]  # train.json: seconds since the last one
    meta = dataset_features(Path(run["dataset"]), run["repo_id"])
    args = [f"--config_path={last / 'pretrained_model' / 'train_config.json'}", "--resume=true"]
    if run["state_noise_rad"]:
        args.append(f"{NOISE_ARG}{run['state_noise_rad']}")
    if run.get("in_memory"):
        args.append(IN_MEMORY_ARG)
    if run.get("backbone_norm", "batch") != "batch":
        args.append(f"{NORM_ARG}{run['backbone_norm']}")
    return _run_lerobot_train(out, run, args, meta, losses, on_progress, threads)


def _run_lerobot_train(out: Path, run: dict, args: list[str], meta, losses: list[tuple[int, float]],
                       on_progress: Callable[[int, int, float], None] | None, threads: int | None) -> TrainResult:
    """Run lerobot-train with `args` (on `threads` threads), following its log (appended to
    `out/lerobot_train.log`) from the step `losses` reached, then leave the policy folder and what
    was measured."""
    steps, run_dir = run["steps"], out / "training"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
                        "SVT_LOG": "1", "TQDM_DISABLE": "1"}
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.monotonic()
    log_lines: list[str] = []
    log_path = out / LOG_FILE  # written as it runs (`tail -f` it); moved into training/ at the end
    with log_path.open("a") as log, subprocess.Popen(
            [sys.executable, "-m", "nsm.policy.lerobot_train_main", *args], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1) as proc:
        for line in proc.stdout:
            log.write(line)
            log.flush()
            log_lines.append(line)
            for step, loss in _losses([line], steps, len(losses)):
                losses.append((step, loss))
                if on_progress is not None:
                    on_progress(step, steps, loss)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        tail = "".join(log_lines[-15:])
        raise NsmError(f"lerobot-train failed (exit {proc.returncode}); its log is {log_path}:\n{tail}"
                       f"(`nsm train --resume --out {out}` continues from the last checkpoint)")
    log_path.replace(run_dir / LOG_FILE)
    (out / RUN_FILE).replace(run_dir / RUN_FILE)
    trained = run_dir / "checkpoints" / "last" / "pretrained_model"
    for item in trained.iterdir():
        shutil.copy2(item, out / item.name)
    dataset = Path(run["dataset"])
    if (dataset / "meta" / IMAGE_INPUT_FILE).is_file():  # the model takes the dataset's resize with it
        shutil.copy2(dataset / "meta" / IMAGE_INPUT_FILE, out / IMAGE_INPUT_FILE)
    result = TrainResult(out, steps, seconds, losses[-1][1] if losses else float("nan"), run["device"],
                         meta.total_episodes, meta.total_frames)
    _write_curve(losses, run_dir)
    (run_dir / "train.json").write_text(json.dumps(asdict(result) | {"model": str(out), "preset": run["preset"],
                                                                      "batch_size": run["batch_size"],
                                                                      "backbone_norm": BACKBONE_NORMS[
                                                                          run.get("backbone_norm", "batch")],
                                                                      "state_noise_rad": run["state_noise_rad"],
                                                                      "backbone": run.get("backbone"),
                                                                      "bf16": run.get("bf16", False),
                                                                      "in_memory": run.get("in_memory", False),
                                                                      "threads": threads or cores(),
                                                                      "resumed_at_steps": run.get("resumed_at_steps", [])},
                                                   indent=2))
    return result


def _losses(lines: list[str], steps: int, logged: int = 0) -> list[tuple[int, float]]:
    """(step, loss) of lerobot-train's log lines among `lines`, the first being log point `logged` + 1."""
    found = [float(m["loss"]) for line in lines if (m := LOG_LINE.search(line))]
    return [((logged + i + 1) * log_freq(steps), loss) for i, loss in enumerate(found)]


def log_freq(steps: int) -> int:
    """How often lerobot-train logs the loss: ~20 points a run, at least every 100 steps."""
    return max(1, min(100, steps // 20))


def _write_curve(losses: list[tuple[int, float]], folder: Path) -> None:
    from nsm.plots import line_plot

    (folder / "loss.csv").write_text("step,loss\n" + "".join(f"{s},{v}\n" for s, v in losses))
    if losses:
        steps, values = zip(*losses, strict=True)
        line_plot(folder / "loss.png", {"training loss": (steps, values)}, "step", "loss (L1 + KL)",
                  "ACT training loss", log_y=True)
