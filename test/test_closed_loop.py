"""The closed loop in miniature: expert demos -> LeRobotDataset -> LeRobot's ACT training ->
evaluation through the robot's runtime (ONNX Runtime). Asserts that every artifact exists and
loads, not a success rate (a few training steps learn nothing)."""
import json

import h5py
import pytest

from nsm.app.collect import Collector
from nsm.app.evaluate import Evaluator
from nsm.errors import NsmError
from nsm.policy.model_dir import PolicyDir
from nsm.policy.train import train_act

MODEL_SIZE = (96, 128)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    # the model's input is 96x128, resized from the cameras' 240x320 (nsm.policy.image_input)
    return Collector(2, tmp_path_factory.mktemp("collect"), seed=0, videos=False, image_size=MODEL_SIZE).run()


@pytest.fixture(scope="module")
def dataset(collection):
    return collection.dataset


@pytest.fixture(scope="module")
def model(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "act"
    seen = []
    result = train_act(dataset, out, steps=4, batch_size=2, device="cpu",
                       on_progress=lambda step, total, loss: seen.append((step, total, loss)))
    assert result.steps == 4 and result.dataset_episodes == 2 and result.device == "cpu"
    assert seen and seen[-1][0] == 4 and seen[-1][1] == 4  # progress followed LeRobot's log
    return out


def test_training_leaves_a_policy_folder_nsm_loads_and_a_loss_curve(model, contract):
    d = PolicyDir(model)
    assert d.features.policy_type == "act" and d.features.chunk_size == 30
    assert set(d.features.cameras) == {c.name for c in contract.cameras}
    # the model takes 96x128 and says it is made from the cameras' own size, by the recorded resize
    assert set(d.features.cameras.values()) == {MODEL_SIZE}
    assert d.features.camera_sizes == {c.name: (c.height, c.width) for c in contract.cameras}
    training = model / "training"
    assert (training / "loss.png").stat().st_size > 1000
    lines = (training / "loss.csv").read_text().splitlines()
    assert lines[0] == "step,loss" and [int(row.split(",")[0]) for row in lines[1:]] == [1, 2, 3, 4]
    assert all(0 < float(row.split(",")[1]) < 1e4 for row in lines[1:])  # LeRobot's logged loss, every step
    assert json.loads((training / "train.json").read_text())["steps"] == 4


def test_the_backbone_learns_its_normalization_and_lerobots_own_act_loads_it(model):
    """nsm.policy.lerobot_train_main: the from-scratch ResNet's BatchNorm learns during training
    (LeRobot's frozen one, never fitted, is the identity); the checkpoint is LeRobot's ACT, whose
    FrozenBatchNorm2d then applies the learned statistics as BatchNorm does in eval mode."""
    import torch
    from lerobot.policies.act.modeling_act import ACTPolicy
    from torch import nn
    from torchvision.ops.misc import FrozenBatchNorm2d

    from nsm.policy.backbone_norm import saved_norm

    assert saved_norm(model / "model.safetensors") == "batch"
    stock = ACTPolicy.from_pretrained(model).model.backbone  # LeRobot's class, unpatched
    norms = [m for m in stock.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(norms) == 20  # ResNet18: every BatchNorm of the backbone
    for norm in norms:  # fitted to the training images, not the identity a frozen, unfitted one is
        assert not torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
        assert not torch.equal(norm.running_var, torch.ones_like(norm.running_var))
    first = norms[0]
    trained = nn.BatchNorm2d(first.weight.numel()).eval()
    trained.load_state_dict({k: getattr(first, k) for k in ("weight", "bias", "running_mean", "running_var")},
                            strict=False)
    x = torch.randn(2, first.weight.numel(), 5, 7)
    torch.testing.assert_close(first(x), trained(x), atol=1e-5, rtol=1e-5)


def test_a_backbone_that_learned_groupnorm_loads_as_it_trained_and_exports(dataset, tmp_path):
    """`nsm train --backbone-norm group`: the ResNet learns GroupNorm (nsm.policy.backbone_norm);
    its checkpoint has no running statistics, so LeRobot's stock ACT (strict=False) would put its
    weights into FrozenBatchNorm2d silently. nsm tells it by its keys and builds GroupNorm: the
    loaded model is the one trained, and its ONNX export computes what LeRobot's call computes."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from lerobot.policies.act.modeling_act import ACTPolicy
    from safetensors.torch import load_file
    from torch import nn
    from torchvision.ops.misc import FrozenBatchNorm2d

    from nsm.policy.backbone_norm import saved_norm
    from nsm.policy.export import checked_onnx, ensure_onnx_export, input_names

    out = tmp_path / "act"
    train_act(dataset, out, steps=2, batch_size=2, device="cpu", backbone_norm="group")
    assert json.loads((out / "training" / "train.json").read_text())["backbone_norm"] == "group"
    assert saved_norm(out / "model.safetensors") == "group"
    d = PolicyDir(out)
    policy = d.load_policy()
    norms = [m for m in policy.model.backbone.modules() if isinstance(m, (nn.GroupNorm, FrozenBatchNorm2d))]
    assert len(norms) == 20 and all(isinstance(m, nn.GroupNorm) and m.num_groups == m.num_channels // 16
                                    for m in norms)
    saved = load_file(out / "model.safetensors")
    assert all(torch.equal(v, saved[k]) for k, v in policy.state_dict().items())  # every weight, as trained
    assert not any(isinstance(m, nn.GroupNorm) for m in ACTPolicy.from_pretrained(out).modules())  # LeRobot's own
    with pytest.raises(NsmError, match="use one of batch, group"):
        train_act(dataset, tmp_path / "other", steps=2, backbone_norm="layer")

    ensure_onnx_export(d)
    f = d.features
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal((1, f.state_dim)).astype(np.float32)] + [
        rng.standard_normal((1, 3, h, w)).astype(np.float32) for h, w in f.cameras.values()]
    onnx = ort.InferenceSession(str(checked_onnx(d))).run(None, dict(zip(input_names(d), feeds, strict=True)))[0]
    with torch.no_grad():
        batch = {"observation.state": torch.from_numpy(feeds[0])} | {
            f"observation.images.{c}": torch.from_numpy(x) for c, x in zip(f.cameras, feeds[1:], strict=True)}
        actions = policy.predict_action_chunk(batch).numpy()
    np.testing.assert_allclose(onnx, actions, atol=1e-4)


def test_training_items_get_a_noisy_joint_state_and_the_same_actions(dataset, model):
    """nsm.policy.lerobot_train_main --nsm-state-noise: LeRobot's dataset items as training sees them
    carry the joint state plus N(0, sigma^2) per joint; the actions (the targets) stay as recorded."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from nsm.policy.lerobot_train_main import add_state_noise
    from nsm.policy.train import PRESETS

    sigma = 0.05

    class Noisy(LeRobotDataset):  # patched on a subclass: LeRobot's own class stays clean for the other tests
        pass

    add_state_noise(Noisy, sigma)
    clean, noisy = (cls("local/nsm_sim_pick_place", root=dataset) for cls in (LeRobotDataset, Noisy))
    items = range(0, len(clean), max(1, len(clean) // 100))
    offsets = torch.stack([noisy[i]["observation.state"] - clean[i]["observation.state"] for i in items])
    assert abs(float(offsets.std()) - sigma) < 0.2 * sigma and abs(float(offsets.mean())) < 0.01
    assert all(torch.equal(noisy[i]["action"], clean[i]["action"]) for i in items)
    assert json.loads((model / "training" / "train.json").read_text())["state_noise_rad"] == PRESETS["cpu"]["state_noise"]


def test_training_items_from_memory_are_lerobots_own(collection, model, tmp_path, monkeypatch):
    """nsm.policy.lerobot_train_main --nsm-in-memory (what `nsm train` runs where the frames fit):
    items built from each video decoded once and from stacked columns are LeRobot's reader's
    items, tensor for tensor, with training's action chunk; a dataset larger than half the
    memory is read by LeRobot's reader."""
    from types import SimpleNamespace

    import torch
    from lerobot.datasets import video_utils
    from lerobot.datasets.dataset_reader import DatasetReader
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from nsm.policy.lerobot_train_main import hold_in_memory
    from nsm.policy.train import fits_in_memory
    from nsm.recording.lerobot_convert import hdf5_to_lerobot

    root = hdf5_to_lerobot(collection.kept, tmp_path / "video", "local/video", "pick", use_videos=True,
                           image_size=MODEL_SIZE)
    chunk = {"action": [i / 30 for i in range(30)]}
    lerobots = LeRobotDataset("local/video", root=root, delta_timestamps=chunk)
    items = [*range(0, len(lerobots), 7), len(lerobots) - 1]  # the last item's chunk runs past its episode
    expected = [lerobots[i] for i in items]
    for name in ("_query_videos", "_query_hf_dataset"):  # restored after the test
        monkeypatch.setattr(DatasetReader, name, getattr(DatasetReader, name))
    monkeypatch.setattr(video_utils, "_default_decoder_cache", video_utils._default_decoder_cache)
    hold_in_memory(video_utils, DatasetReader)
    ours = LeRobotDataset("local/video", root=root, delta_timestamps=chunk)
    for i, want in zip(items, expected, strict=True):
        got = ours[i]
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert torch.equal(got[key], value) if isinstance(value, torch.Tensor) else got[key] == value, (i, key)
    assert expected[-1]["action_is_pad"][1:].all()  # the padded end of a chunk is covered
    decoded = video_utils._default_decoder_cache.decoded  # one whole video per camera, decoded once
    assert len(decoded) == len(lerobots.meta.video_keys)
    assert all(len(video.frames.data) == len(lerobots) for video in decoded.values())
    assert json.loads((model / "training" / "train.json").read_text())["in_memory"] is True
    huge = SimpleNamespace(video_keys=["observation.images.front"], total_frames=10**9,
                           features={"observation.images.front": {"shape": [96, 128, 3]}})
    assert not fits_in_memory(huge, 1)


def test_training_builds_torchs_fused_adamw(monkeypatch):
    """nsm.policy.lerobot_train_main: LeRobot's AdamW config builds torch's fused AdamW (the same
    update, one kernel) with LeRobot's own settings."""
    import torch
    from lerobot.optim.optimizers import AdamWConfig

    from nsm.policy.lerobot_train_main import fused_adamw

    monkeypatch.setattr(AdamWConfig, "build", AdamWConfig.build)  # restored after the test
    fused_adamw(AdamWConfig)
    weights = [torch.nn.Parameter(torch.ones(3))]
    optimizer = AdamWConfig(lr=1e-4, weight_decay=1e-4, grad_clip_norm=5.0).build(weights)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
    assert optimizer.defaults["lr"] == 1e-4 and optimizer.defaults["weight_decay"] == 1e-4
    stock = torch.optim.AdamW([reference := torch.nn.Parameter(torch.ones(3))], lr=1e-4, weight_decay=1e-4)
    for _ in range(3):
        for w in (weights[0], reference):
            w.grad = torch.tensor([0.5, -1.0, 2.0])
        optimizer.step()
        stock.step()
    torch.testing.assert_close(weights[0], reference)  # the same update as torch's AdamW


def test_training_can_start_the_backbone_from_given_weights(dataset, tmp_path):
    """nsm.policy.lerobot_train_main --nsm-backbone (train_act's `backbone`): the run's ResNet starts
    from the given weights (bench/backbone_pretrain.py's), not from scratch; recorded in train.json."""
    import torch
    import torchvision
    from lerobot.policies.act.modeling_act import ACTPolicy
    from safetensors.torch import save_file
    from torch import nn
    from torchvision.models._utils import IntermediateLayerGetter

    torch.manual_seed(7)
    given = IntermediateLayerGetter(torchvision.models.resnet18(weights=None, norm_layer=nn.BatchNorm2d),
                                    return_layers={"layer4": "feature_map"}).state_dict()
    given["conv1.weight"] += 1.0  # far from any fresh initialization
    weights = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in given.items()}, weights)
    train_act(dataset, tmp_path / "act", steps=2, batch_size=2, device="cpu", backbone=weights)
    trained = ACTPolicy.from_pretrained(tmp_path / "act").model.backbone.state_dict()
    moved = (trained["conv1.weight"] - given["conv1.weight"]).abs().max()
    assert moved < 0.01  # two updates at lr 1e-4 from the given weights
    assert trained["conv1.weight"].mean() > 0.9  # a fresh init's mean is ~0
    assert json.loads((tmp_path / "act" / "training" / "train.json").read_text())["backbone"] == str(weights)
    with pytest.raises(NsmError, match="not found"):
        train_act(dataset, tmp_path / "other", steps=2, backbone=tmp_path / "missing.safetensors")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_training_and_robot_paths_give_the_model_the_same_inputs_and_get_the_same_actions(collection, model, backend):
    """Train/serve parity on recorded frames, with the model's input (96x128) smaller than the
    cameras' (240x320): LeRobot's training path (the dataset as
    lerobot-train made it from the saved train_config.json — ImageNet stats for the cameras
    included — -> an item -> the preprocessor built from those stats -> ACT) and
    nsm's robot path (the recorded camera frame and joint state -> LeRobotChunkPolicy on the
    robot's backend) agree on every normalized tensor and on the actions. A skew in colour
    order, resize, scaling, normalization stats, camera order or state order fails here, and a
    frame of another size than the camera's is refused."""
    import lerobot.policies  # noqa: F401  registers the policy config types the train config names
    import numpy as np
    import torch
    from lerobot.configs.train import TrainPipelineConfig
    from lerobot.datasets.factory import make_dataset
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    from nsm.contract import Observation
    from nsm.policy.export import ensure_onnx_export
    from nsm.policy.lerobot_policy import LeRobotChunkPolicy

    cfg = TrainPipelineConfig.from_pretrained(model)
    assert cfg.dataset.image_transforms.enable  # the recipe's random shift: training-time only, so left out here
    cfg.dataset.image_transforms.enable = False
    ds = make_dataset(cfg)
    assert ds.root == collection.dataset
    lerobot_policy = ACTPolicy.from_pretrained(model).eval()
    pre, post = make_pre_post_processors(lerobot_policy.config, dataset_stats=ds.meta.stats)
    if backend == "onnxruntime":
        ensure_onnx_export(PolicyDir(model))
    ours = LeRobotChunkPolicy(model, backend)
    keys = ["observation.state", *(f"observation.images.{cam}" for cam in ours.features.cameras)]
    with h5py.File(collection.kept[0]) as f:  # the dataset's first episode, as recorded on the robot's path
        for t in (0, 120, 299):
            item = ds[t]
            assert int(item["episode_index"]) == 0 and int(item["frame_index"]) == t
            trained = pre({k: item[k] for k in keys})
            obs = Observation(t, 0.0, f["observations/qpos"][t],
                              {cam: f[f"observations/images/{cam}"][t] for cam in ours.features.cameras})
            served = ours.batch(obs)
            for k in keys:
                assert served[k].shape == trained[k].shape, k
                assert torch.max(torch.abs(served[k] - trained[k])).item() <= 1e-5, k
            with torch.no_grad():
                expected = post(lerobot_policy.predict_action_chunk(trained))[0].numpy()
            got = ours.predict_chunk(obs)
            assert got.shape == expected.shape and np.max(np.abs(got - expected)) <= 1e-5, np.max(np.abs(got - expected))
    small = {cam: ds[0][f"observation.images.{cam}"] for cam in ours.features.cameras}  # already the model's size
    with pytest.raises(NsmError, match=r"policy expects \(240, 320, 3\) uint8"):
        ours.batch(Observation(0, 0.0, obs.state, {c: (im.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                                                  for c, im in small.items()}))


def test_evaluation_runs_the_model_through_the_runtime_and_reports(model, tmp_path):
    r = Evaluator(model, episodes=2, out=tmp_path / "eval", seconds=1.0).run()
    assert r.episodes == 2 and r.backend == "onnxruntime" and r.seeds == "1000..1001"
    assert 0.0 <= r.wilson95[0] <= r.success_rate <= r.wilson95[1] <= 1.0
    assert (model / "onnx" / "model.onnx").is_file()  # exported on first use
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["episodes"] == 2
    assert (tmp_path / "eval" / "eval_sheet.png").stat().st_size > 1000
    assert r.inference_ms_p50 > 0
    # ACT's temporal ensembling, a chunk asked for on every tick: recorded, and many more chunks than plain chunking
    e = Evaluator(model, episodes=1, out=tmp_path / "ensemble", seconds=1.0, merge="ensemble", threshold=1.0).run()
    assert (e.merge, e.threshold, r.merge, r.threshold) == ("ensemble", 1.0, "replace", 0.5)
    chunks = []
    for folder in (tmp_path / "eval", tmp_path / "ensemble"):
        with h5py.File(folder / "episode_0.hdf5") as f:
            chunks.append(f["chunks/length"].shape[0])
    assert chunks[1] > 3 * chunks[0], chunks


def test_training_refuses_an_empty_or_foreign_folder_before_starting(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NsmError, match="not a LeRobotDataset"):
        train_act(tmp_path / "empty", tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_training_refuses_a_negative_state_noise_before_starting(dataset, tmp_path):
    with pytest.raises(NsmError, match="state-noise -0.1 is negative"):
        train_act(dataset, tmp_path / "model", state_noise=-0.1)
    assert not (tmp_path / "model").exists()


def test_training_refuses_a_dataset_of_another_robot(dataset, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(dataset, other)
    info = json.loads((other / "meta" / "info.json").read_text())
    info["features"]["observation.state"]["names"][0] = "base_yaw"
    (other / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(NsmError, match="has joints .*base_yaw.* robot so101 has"):
        train_act(other, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_a_model_for_other_cameras_is_refused_before_anything_moves(tmp_path):
    from nsm.policy.init import init_act

    init_act(tmp_path / "top", ["top"], 6, (240, 320), chunk_size=10, small=True)
    with pytest.raises(NsmError, match="top"):
        Evaluator(tmp_path / "top", episodes=1, out=tmp_path / "eval", backend="torch")
    assert not (tmp_path / "eval").exists()  # refused before any folder or episode was made


def test_int8_export_is_calibrated_on_recorded_frames_and_runs_on_the_robot_path(collection, model):
    """`nsm policy export --format onnx-int8`: static int8 (QDQ) calibrated on the recorded
    episodes; the `onnxruntime-int8` backend runs it through the same robot path and its chunks
    stay close to the fp32 export's; a model re-trained since (other stats) is refused."""
    import numpy as np
    import onnx

    from nsm.contract import Observation
    from nsm.policy.lerobot_policy import LeRobotChunkPolicy
    from nsm.policy.quantize import quantize_int8

    episodes = collection.kept[0].parent
    path = quantize_int8(PolicyDir(model), episodes, frames=16)
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert sum(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer) >= 20  # the conv/linear weights
    meta = json.loads((model / "onnx" / "int8.json").read_text())
    assert meta["calibration"]["frames"] == 16 and meta["stats_hash"] == PolicyDir(model).stats_hash()
    fp32, int8 = LeRobotChunkPolicy(model, "onnxruntime"), LeRobotChunkPolicy(model, "onnxruntime-int8")
    diffs = []
    with h5py.File(collection.kept[1]) as f:
        motion = float(np.ptp(f["action"][:], axis=0).mean())  # how far the joints move in the episode
        for t in (0, 150, 299):
            obs = Observation(t, 0.0, f["observations/qpos"][t],
                              {cam: f[f"observations/images/{cam}"][t] for cam in fp32.features.cameras})
            a, b = fp32.predict_chunk(obs), int8.predict_chunk(obs)
            assert a.shape == b.shape and np.all(np.isfinite(b))
            diffs.append(np.abs(a - b).mean())
    assert 0 < np.mean(diffs)  # it is another model, not the fp32 file again...
    assert np.mean(diffs) < 0.02 * motion, (np.mean(diffs), motion)  # ...that acts alike


def test_int8_export_needs_recorded_episodes_and_is_refused_once_stale(model, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from nsm.cli import app
    from nsm.policy.quantize import calibration_feeds, checked_int8

    r = CliRunner().invoke(app, ["policy", "export", str(model), "--format", "onnx-int8"])
    assert r.exit_code != 0 and "--calibration" in r.output
    with pytest.raises(NsmError, match="no episode_<n>.hdf5"):
        calibration_feeds(PolicyDir(model), tmp_path, 4)
    other = tmp_path / "other"
    shutil.copytree(model, other)
    (other / "onnx").mkdir(exist_ok=True)  # the module's earlier tests may or may not have exported it
    (other / "onnx" / "int8.json").write_text(json.dumps({"file": "model.int8.onnx", "stats_hash": "something else"}))
    with pytest.raises(NsmError, match="other normalization stats"):
        checked_int8(PolicyDir(other))


def test_the_loss_curve_counts_steps_from_the_log_not_lerobots_rounded_step():
    """lerobot-train prints step:2K for every step 1500-2499; the curve's steps come from the
    log cadence, and the total loss is taken, not l1_loss or kld_loss."""
    from nsm.policy.train import LOG_LINE, log_freq

    line = ("Training:  19%| 1500/8000 [19:00<36:34]INFO 2026-12-01 12:03:12 ot_train.py:641 step:2K smpl:12K ep:40 "
            "epch:0.80 loss:0.286 grdn:13.362 lr:1.0e-04 updt_s:0.364 data_s:0.035 smp/s:20 l1_loss:0.145 kld_loss:0.014")
    assert float(LOG_LINE.search(line)["loss"]) == 0.286
    assert LOG_LINE.search("INFO step:2K l1_loss:0.145 kld_loss:0.014") is None
    assert (log_freq(8000), log_freq(4), log_freq(100_000)) == (100, 1, 100)


def test_loss_curves_of_models_finishing_side_by_side_all_get_drawn(tmp_path):
    """`nsm train --models N` draws each model's log-scale loss plot from its own thread;
    matplotlib's text parser is not thread-safe (unguarded, this raised ParseException in
    some threads), so nsm.plots draws one figure at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from nsm.plots import line_plot

    curve = (list(range(100, 2100, 100)), [4.0 / (k + 1) for k in range(20)])

    def draw(k: int) -> list:
        return [line_plot(tmp_path / f"loss-{k}-{i}.png", {"training loss": curve}, "step", "loss", "ACT", log_y=True)
                for i in range(6)]

    with ThreadPoolExecutor(4) as pool:
        drawn = [path for paths in pool.map(draw, range(4)) for path in paths]
    assert len(drawn) == 24 and all(Image.open(path).size == (800, 450) for path in drawn)


def test_a_killed_training_resumes_from_its_last_checkpoint(dataset, tmp_path):
    """`nsm train` SIGKILLed after its first checkpoint (every quarter of the steps), then
    `nsm train --resume`: LeRobot continues from that checkpoint's step (not from 0: the
    resumed log has only the remaining steps), the loss curve holds every step once, and the
    policy folder is left as by a run that never stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from nsm.policy.train import LOG_LINE

    out, steps = tmp_path / "act", 20  # a checkpoint every 5 steps, the loss logged every step
    nsm = [sys.executable, "-m", "nsm.cli", "train", "--out", str(out)]
    first = subprocess.Popen([*nsm, "--dataset", str(dataset), "--steps", str(steps), "--batch-size", "2",
                              "--device", "cpu"], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "training" / "checkpoints" / "last"
    deadline = time.monotonic() + 300
    while not last.is_dir() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # nsm train and lerobot-train, as a lost shell would
    first.wait()
    done = json.loads((last / "training_state" / "training_step.json").read_text())["step"]
    assert done < steps and not (out / "model.safetensors").exists()
    logged_before = len(LOG_LINE.findall((out / "lerobot_train.log").read_text()))

    r = subprocess.run([*nsm, "--resume"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"trained ACT for {steps} steps" in r.stdout
    training = out / "training"
    resumed = len(LOG_LINE.findall((training / "lerobot_train.log").read_text())) - logged_before
    assert resumed == steps - done  # lerobot-train went on from the checkpoint
    curve = (training / "loss.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in curve] == list(range(1, steps + 1))
    assert {k: json.loads((training / "train.json").read_text())[k] for k in ("steps", "resumed_at_steps")} == {
        "steps": steps, "resumed_at_steps": [done]}
    assert json.loads((last / "training_state" / "training_step.json").read_text())["step"] == steps
    assert PolicyDir(out).features.policy_type == "act"

    again = subprocess.run([*nsm, "--resume"], capture_output=True, text=True)
    assert again.returncode == 2 and "finished training" in again.stdout + again.stderr
    neither = subprocess.run(nsm[:-2] + ["--out", str(tmp_path / "new")], capture_output=True, text=True)
    assert neither.returncode == 2 and "--dataset" in neither.stdout + neither.stderr


def test_several_models_train_side_by_side_as_one_ensemble_and_resume_where_they_stopped(dataset, tmp_path):
    """`nsm train --models 2`: seeds 1000 and 1001 side by side on the CPU, the cores split between
    them, the second in OUT/members/1; SIGKILLed while both train, `--resume` continues each from
    its checkpoint and joins them into one policy (an ensemble). Where the CPU computes bfloat16,
    lerobot-train ran with LeRobot's mixed precision."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from nsm.policy.lerobot_policy import LeRobotChunkPolicy
    from nsm.policy.model_dir import ENSEMBLE_FILE
    from nsm.policy.train import RUN_FILE, cores, cpu_computes_bf16

    out, steps = tmp_path / "act", 60
    folders = [out, out / "members" / "1"]
    nsm = [sys.executable, "-m", "nsm.cli", "train", "--out", str(out)]
    log = tmp_path / "first.log"
    with log.open("w") as output:
        first = subprocess.Popen([*nsm, "--dataset", str(dataset), "--steps", str(steps), "--batch-size", "2",
                                  "--device", "cpu", "--models", "2"], start_new_session=True,
                                 stdout=output, stderr=subprocess.STDOUT)
    lasts = [f / "training" / "checkpoints" / "last" for f in folders]
    deadline = time.monotonic() + 600
    while not all(last.is_dir() for last in lasts) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # the first run must still be training when killed (a CI run once found it gone: its output says why)
    assert first.poll() is None, f"exit {first.returncode} before both checkpoints:\n{log.read_text()[-4000:]}"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    # side by side: both had saved a checkpoint, neither had finished
    assert not any((f / "training" / "train.json").is_file() for f in folders) and not (out / ENSEMBLE_FILE).exists()
    saved = [json.loads((last / "training_state" / "training_step.json").read_text())["step"] for last in lasts]
    assert all(0 < step < steps for step in saved)

    r = subprocess.run([*nsm, "--resume"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(f"trained ACT for {steps} steps") == 2 and "mean of its models' chunks" in r.stdout
    trained = [json.loads((f / "training" / "train.json").read_text()) for f in folders]
    assert [t["resumed_at_steps"] for t in trained] == [[step] for step in saved]
    assert [t["threads"] for t in trained] == [max(1, cores() // 2)] * 2
    assert [t["bf16"] for t in trained] == [cpu_computes_bf16()] * 2
    assert [json.loads((f / "train_config.json").read_text())["policy"]["use_amp"] for f in folders] == [
        cpu_computes_bf16()] * 2
    assert [json.loads((f / "training" / RUN_FILE).read_text())["seed"] for f in folders] == [1000, 1001]
    d = PolicyDir(out)
    assert [m.path for m in d.members] == [out / "members" / "1"]
    assert LeRobotChunkPolicy(out, "torch").name.startswith("actx2:")
    again = subprocess.run([*nsm, "--resume"], capture_output=True, text=True)
    assert again.returncode == 2 and "finished training" in again.stdout + again.stderr
    (tmp_path / "empty").mkdir()
    nothing = subprocess.run([*nsm[:-1], str(tmp_path / "empty"), "--resume"], capture_output=True, text=True)
    assert nothing.returncode == 2 and "holds no run started by `nsm train`" in nothing.stdout + nothing.stderr
