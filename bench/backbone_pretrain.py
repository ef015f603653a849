"""A ResNet18 that reads the cube, pretrained on simulator renders, for ACT to start from.

The ACT anchors (ACT repo 90%, LeRobot's 87.6%) start from ImageNet weights; nsm's cpu recipe
starts its backbone from scratch (nothing can be downloaded), and no model trained so far
turns its wrist to the cube's heading (bench/results/learned_grasps.json: the roll at the
close as far from the heading as one fixed roll would be). The simulator knows where the cube
is, so a backbone can first be taught to say so: each sample poses the arm as a demonstration
did before its grasp (its recorded joints), puts a cube near that demonstration's cube (or
anywhere in the scene's cube area) at a random heading, renders both cameras at their own size
and downscales them with the one resize the runtime uses (nsm.policy.image_input). The network
(ACT's own backbone layout: torchvision ResNet18 to layer4, BatchNorm learning) regresses the
cube's position and heading in the world and relative to the gripper; its backbone weights
go to `nsm train`'s `backbone=` (nsm.policy.lerobot_train_main --nsm-backbone), and the ACT
then trains as the recipe always does.

    .venv/bin/python bench/backbone_pretrain.py WORK --samples 20000 --minutes 15

WORK holds collect/ (`nsm sim collect`: episodes/ and lerobot/); writes WORK/backbone/.
"""
import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
FRAMES_BEFORE_LIFT = 96  # the expert's plan: reach 1.6 s + descend 1.0 s + close 0.7 s = frame 99
NEAR_OWN_CUBE = 0.7  # share of samples whose cube is near the demonstration's own (the wrist sees it)
NEAR_M = 0.03  # how far from the demonstration's cube such a cube may lie, each way
HOLDOUT = 1000
N_LABELS = 9  # cube xy, heading (cos, sin), xyz in the gripper frame, heading to the jaws (cos, sin)


def _labels(model, data, site: int, cube_xy: np.ndarray, yaw: float, cube_z: float) -> np.ndarray:
    """Cube position (world, scaled), heading (4-fold symmetric), position in the gripper site's
    frame and heading relative to the jaw line (both 4-fold)."""
    from nsm.sim.scene import CUBE_AREA

    centre, half = CUBE_AREA.mean(axis=0), (CUBE_AREA[1] - CUBE_AREA[0]) / 2
    rot = data.site_xmat[site].reshape(3, 3)
    rel = rot.T @ (np.array([*cube_xy, cube_z]) - data.site_xpos[site])
    jaw = rot[:, 2]  # the site's z axis: the line the jaws close along
    jaw_angle = np.arctan2(jaw[1], jaw[0])
    return np.array([*((cube_xy - centre) / half), np.cos(4 * yaw), np.sin(4 * yaw), *(rel * 10),
                     np.cos(4 * (jaw_angle - yaw - np.pi / 2)), np.sin(4 * (jaw_angle - yaw - np.pi / 2))],
                    np.float32)


def _render_worker(args: tuple) -> tuple[np.ndarray, np.ndarray]:
    collect, indices, seed, model_size = args
    import h5py
    import mujoco

    from nsm.contract import load_contract
    from nsm.policy.image_input import to_model_size
    from nsm.recording.episodes import episode_files
    from nsm.sim.ik import SITE
    from nsm.sim.scene import CUBE_AREA, SimScene

    contract = load_contract("so101")
    scene = SimScene(contract)
    model, data = scene.model, mujoco.MjData(scene.model)
    site = model.site(SITE).id
    cube_z = float(model.geom("block").size[2])
    files = episode_files(collect / "episodes")
    joints = [h5py.File(f)["observations/qpos"][:FRAMES_BEFORE_LIFT] for f in files]
    own = []
    for e in range(len(files)):
        scene.reset(e)  # `nsm sim collect --seed 0`: episode e is seed e
        own.append(scene.cube_pose()[0][:2])
    rng = np.random.default_rng(seed)
    h, w = contract.camera("front").height, contract.camera("front").width
    images = np.empty((len(indices), 2, *model_size, 3), np.uint8)
    labels = np.empty((len(indices), N_LABELS), np.float32)
    with mujoco.Renderer(model, h, w) as renderer:
        for i in range(len(indices)):
            e = rng.integers(len(files))
            t = rng.integers(FRAMES_BEFORE_LIFT)
            if rng.random() < NEAR_OWN_CUBE:
                xy = own[e] + rng.uniform(-NEAR_M, NEAR_M, 2)
            else:
                xy = rng.uniform(CUBE_AREA[0] - 0.02, CUBE_AREA[1] + 0.02)
            yaw = rng.uniform(-np.pi / 4, np.pi / 4)
            scene.set_joint_positions(joints[e][t])
            scene.set_cube_qpos(np.array([xy[0], xy[1], cube_z, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]))
            scene.snapshot(data)  # the kinematics a render needs, as the sim cameras do
            for c, cam in enumerate(("front", "wrist")):
                renderer.update_scene(data, camera=cam)
                images[i, c] = to_model_size(renderer.render(), model_size)
            labels[i] = _labels(model, data, site, xy, yaw, cube_z)
    return images, labels


def render(collect: Path, samples: int, model_size: tuple[int, int], workers: int = 2):
    chunks = np.array_split(np.arange(samples), workers)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_render_worker, [(collect, c, 1000 + k, model_size) for k, c in enumerate(chunks)])
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def cube_reader(feature_hw: tuple[int, int]):
    """ACT's backbone (ResNet18 to layer4, shared by the cameras) and a small regression head."""
    import torch
    import torchvision
    from torch import nn
    from torchvision.models._utils import IntermediateLayerGetter

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            resnet = torchvision.models.resnet18(weights=None, norm_layer=nn.BatchNorm2d)
            self.backbone = IntermediateLayerGetter(resnet, return_layers={"layer4": "feature_map"})
            self.squeeze = nn.Conv2d(512, 32, 1)
            self.head = nn.Sequential(nn.Linear(2 * 32 * feature_hw[0] * feature_hw[1], 256), nn.ReLU(),
                                      nn.Linear(256, N_LABELS))

        def forward(self, x):  # x: (B, 2, 3, H, W), normalized
            b = x.shape[0]
            f = self.backbone(x.flatten(0, 1))["feature_map"]
            return self.head(torch.relu(self.squeeze(f)).reshape(b, -1))

    return Net()


def errors(pred: np.ndarray, true: np.ndarray) -> dict:
    """Held-out errors in the units a grasp cares about."""
    from nsm.sim.scene import CUBE_AREA

    half = (CUBE_AREA[1] - CUBE_AREA[0]) / 2

    def heading_deg(p, t):  # 4-fold: angle between the (cos 4a, sin 4a) vectors / 4
        a = np.arctan2(p[:, 1], p[:, 0]) - np.arctan2(t[:, 1], t[:, 0])
        return float(np.degrees(np.abs(np.angle(np.exp(1j * a)))).mean() / 4)

    return {"world_xy_cm": float(np.linalg.norm((pred[:, :2] - true[:, :2]) * half, axis=1).mean() * 100),
            "heading_deg": heading_deg(pred[:, 2:4], true[:, 2:4]),
            "gripper_frame_cm": float(np.linalg.norm(pred[:, 4:7] - true[:, 4:7], axis=1).mean() * 10),
            "heading_to_jaws_deg": heading_deg(pred[:, 7:9], true[:, 7:9])}


def pretrain(images: np.ndarray, labels: np.ndarray, stats: dict, minutes: float, batch: int = 32,
             seed: int = 0) -> tuple[object, dict]:
    import torch
    from torchvision.transforms import v2

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    mean = torch.tensor(np.array([stats[f"observation.images.{c}"]["mean"] for c in ("front", "wrist")]),
                        dtype=torch.float32).reshape(1, 2, 3, 1, 1)
    std = torch.tensor(np.array([stats[f"observation.images.{c}"]["std"] for c in ("front", "wrist")]),
                       dtype=torch.float32).reshape(1, 2, 3, 1, 1)
    shift = v2.RandomAffine(degrees=0.0, translate=(0.06, 0.06))  # the cpu recipe's augmentation

    def batch_of(idx, augment):
        x = torch.from_numpy(images[idx]).permute(0, 1, 4, 2, 3).float() / 255
        if augment:
            x = torch.stack([torch.stack([shift(cam) for cam in item]) for item in x])
        return (x - mean) / std, torch.from_numpy(labels[idx])

    h, w = images.shape[2:4]
    net = cube_reader((-(-h // 32), -(-w // 32)))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    train_idx, held = np.arange(HOLDOUT, len(images)), np.arange(HOLDOUT)
    baseline = errors(np.tile(labels[train_idx].mean(axis=0), (HOLDOUT, 1)), labels[held])
    rng, step, curve, started = np.random.default_rng(seed), 0, [], time.monotonic()
    while time.monotonic() - started < minutes * 60:
        net.train()
        x, y = batch_of(rng.choice(train_idx, batch, replace=False), augment=True)
        loss = torch.nn.functional.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            curve.append([step, round(loss.item(), 4)])
            print(f"step {step} loss {loss.item():.4f} {time.monotonic() - started:.0f}s", flush=True)
    net.eval()
    with torch.no_grad():
        pred = np.concatenate([net(batch_of(held[i:i + 100], augment=False)[0]).numpy() for i in range(0, HOLDOUT, 100)])
    return net, {"steps": step, "batch_size": batch, "minutes": minutes, "loss_curve": curve,
                 "held_out": errors(pred, labels[held]), "constant_prediction": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--minutes", type=float, default=15.0)
    args = parser.parse_args()
    from safetensors.torch import save_file

    from nsm.policy.image_input import ImageInput

    collect = args.work / "collect"
    resize = ImageInput.read(collect / "lerobot" / "meta")
    if resize is None:
        sys.exit(f"{collect}/lerobot was not downscaled (no nsm_image_input.json); collect with --image-size")
    started = time.monotonic()
    images, labels = render(collect, args.samples + HOLDOUT, resize.model_size)
    render_s = time.monotonic() - started
    print(f"rendered {len(images)} samples in {render_s:.0f} s", flush=True)
    stats = json.loads((collect / "lerobot" / "meta" / "stats.json").read_text())
    net, report = pretrain(images, labels, stats, args.minutes)
    out = args.work / "backbone"
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.backbone.state_dict().items()}, out / "backbone.safetensors")
    report |= {"samples": args.samples, "render_seconds": round(render_s, 1), "model_size": list(resize.model_size)}
    (out / "pretrain.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "loss_curve"}, indent=2))


if __name__ == "__main__":
    main()
