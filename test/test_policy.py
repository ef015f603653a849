"""LeRobot policies in nsm: parity of ONNX Runtime with LeRobot's own forward, Diffusion on
torch, and one clear error for each kind of bad input."""
import json
import shutil

import numpy as np
import pytest
import torch

from nsm.contract import Observation, load_contract
from nsm.errors import NsmError
from nsm.policy.export import export_onnx
from nsm.policy.init import init_act
from nsm.policy.lerobot_policy import LeRobotChunkPolicy
from nsm.policy.model_dir import PolicyDir

SIZE = (96, 128)


@pytest.fixture(scope="module", params=[["front"], ["front", "wrist"]], ids=["1cam", "2cam"])
def act_dir(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("act") / "policy"
    d = init_act(out, request.param, 6, SIZE, chunk_size=20, small=True)
    export_onnx(d)
    return d


def observation(cameras, seed=0, size=SIZE):
    rng = np.random.default_rng(seed)
    images = {c: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for c in cameras}
    return Observation(0, 0.0, rng.normal(size=6), images)


def lerobot_reference(d: PolicyDir, obs: Observation) -> np.ndarray:
    """LeRobot alone: ACTPolicy.from_pretrained + its saved processors + predict_action_chunk."""
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    policy = ACTPolicy.from_pretrained(d.path).eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(d.path))
    frame = {"observation.state": torch.tensor(obs.state, dtype=torch.float32)}
    for name, image in obs.images.items():
        frame[f"observation.images.{name}"] = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        return post(policy.predict_action_chunk(pre(frame)))[0].numpy()


def test_onnxruntime_matches_lerobot_forward(act_dir):
    cameras = list(act_dir.features.cameras)
    ours = LeRobotChunkPolicy(act_dir.path, "onnxruntime")
    for seed in range(3):
        obs = observation(cameras, seed)
        expected = lerobot_reference(act_dir, obs)
        got = ours.predict_chunk(obs)
        assert got.shape == (20, 6)
        assert np.abs(got - expected).max() <= 1e-4
        assert np.abs(expected).max() > 1e-3  # a real, non-trivial output


def test_torch_backend_is_lerobot_forward(act_dir):
    obs = observation(list(act_dir.features.cameras), 7)
    got = LeRobotChunkPolicy(act_dir.path, "torch").predict_chunk(obs)
    assert np.abs(got - lerobot_reference(act_dir, obs)).max() <= 1e-6


def test_bad_observations_are_one_clear_error(act_dir):
    policy = LeRobotChunkPolicy(act_dir.path, "onnxruntime")
    cameras = list(act_dir.features.cameras)
    nan_state = observation(cameras)
    nan_state.state[2] = np.nan
    with pytest.raises(NsmError, match="state contains NaN"):
        policy.predict_chunk(nan_state)
    with pytest.raises(NsmError, match=r"policy expects a state of 6 values, got shape \(5,\)"):
        policy.predict_chunk(Observation(0, 0.0, np.zeros(5), observation(cameras).images))
    with pytest.raises(NsmError, match=r"camera 'front': policy expects \(96, 128, 3\) uint8 RGB, got \(240, 320, 3\)"):
        policy.predict_chunk(observation(cameras, size=(240, 320)))
    with pytest.raises(NsmError, match="policy needs camera 'front'"):
        policy.predict_chunk(Observation(0, 0.0, np.zeros(6), {}))


def test_features_are_checked_against_the_robot(act_dir, tmp_path):
    contract = load_contract("so101")  # cameras at 240x320
    with pytest.raises(NsmError, match="policy expects camera 'front' at 96x128, robot contract has 240x320"):
        LeRobotChunkPolicy(act_dir.path, "onnxruntime", contract)
    with pytest.raises(NsmError, match="policy needs camera 'front', robot offers wrist"):
        act_dir.features.check_against(contract, ["wrist"])
    seven = init_act(tmp_path / "seven", ["front"], 7, (240, 320), chunk_size=5, small=True)
    with pytest.raises(NsmError, match="policy expects state 7 / action 7 values, robot so101 has 6 joints"):
        seven.features.check_against(contract)


def test_a_model_dir_missing_files_names_them(act_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(act_dir.path, broken)
    (broken / "model.safetensors").unlink()
    (broken / "policy_postprocessor.json").unlink()
    with pytest.raises(NsmError, match="is missing model.safetensors, policy_postprocessor.json"):
        LeRobotChunkPolicy(broken, "torch")
    with pytest.raises(NsmError, match="does not exist"):
        PolicyDir(tmp_path / "nowhere")


def test_a_stale_or_missing_export_is_refused(act_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(act_dir.path, copy, ignore=shutil.ignore_patterns("onnx"))
    with pytest.raises(NsmError, match="has no ONNX export; run `nsm policy export"):
        LeRobotChunkPolicy(copy, "onnxruntime")
    shutil.copytree(act_dir.path / "onnx", copy / "onnx")
    stats = next(copy.glob("policy_preprocessor*normalizer*.safetensors"))
    stats.write_bytes(stats.read_bytes()[:-4] + b"\0\0\0\0")  # other normalization stats
    with pytest.raises(NsmError, match="made from another config or other normalization stats"):
        LeRobotChunkPolicy(copy, "onnxruntime")


def test_onnx_export_metadata(act_dir):
    meta = json.loads((act_dir.path / "onnx" / "export.json").read_text())
    assert list(meta["inputs"]) == ["observation.state"] + [f"observation.images.{c}" for c in act_dir.features.cameras]
    assert meta["chunk_size"] == 20 and meta["stats_hash"] == act_dir.stats_hash() and meta["opset"] == 17


def test_unknown_backend_and_missing_tensorrt_are_clear(act_dir):
    with pytest.raises(NsmError, match="unknown backend 'jax'; use one of torch, onnxruntime, onnxruntime-int8, tensorrt"):
        LeRobotChunkPolicy(act_dir.path, "jax")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(NsmError, match="backend 'tensorrt' needs TensorRT"):
            LeRobotChunkPolicy(act_dir.path, "tensorrt")


def test_tensorrt_export_of_a_folder_without_onnx_exports_onnx_first(tmp_path):
    """`nsm policy export DIR --format tensorrt` on a fresh folder makes the ONNX export the
    engine is built from (README's Jetson step 3); here no TensorRT follows, which it says."""
    import subprocess
    import sys

    d = init_act(tmp_path / "fresh", ["front"], 6, SIZE, chunk_size=10, small=True)
    result = subprocess.run([sys.executable, "-m", "nsm.cli", "policy", "export", str(d.path), "--format", "tensorrt"],
                            capture_output=True, text=True, timeout=300)
    assert (d.path / "onnx" / "export.json").is_file() and (d.path / "onnx" / "model.onnx").is_file()
    assert "has no ONNX export" not in result.stderr
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert result.returncode == 2 and "needs TensorRT" in result.stderr, result.stderr
    else:
        assert result.returncode == 0 and list((d.path / "tensorrt").glob("*.engine")), result.stderr


def test_an_ensemble_runs_the_mean_of_its_models_on_every_backend(tmp_path):
    """`nsm policy ensemble`: the chunk is the mean of each model's LeRobot chunk, through the one
    ONNX graph and through LeRobot's own call (torch); the folder stays a LeRobot policy (its
    first model); models that take other inputs are refused; a changed member makes the export stale."""
    import subprocess
    import sys

    from nsm.policy.ensemble import make_ensemble

    models = [init_act(tmp_path / f"m{seed}", ["front", "wrist"], 6, SIZE, chunk_size=20, small=True, seed=seed)
              for seed in (1, 2)]
    made = subprocess.run([sys.executable, "-m", "nsm.cli", "policy", "ensemble", str(tmp_path / "both"),
                           *(str(m.path) for m in models)], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0 and "ensemble of 2 models" in made.stdout, made.stderr
    both = PolicyDir(tmp_path / "both")
    assert [m.path for m in both.members] == [tmp_path / "both" / "members" / "1"]
    export_onnx(both)
    assert json.loads((both.path / "onnx" / "export.json").read_text())["models"] == 2
    onnx, torch_backend = LeRobotChunkPolicy(both.path, "onnxruntime"), LeRobotChunkPolicy(both.path, "torch")
    assert onnx.name == "actx2:both:onnxruntime"
    for seed in range(2):
        obs = observation(["front", "wrist"], seed)
        alone = [lerobot_reference(m, obs) for m in models]
        expected = np.mean(alone, axis=0)
        assert np.abs(alone[0] - alone[1]).max() > 1e-2  # two different models: the mean is neither
        assert np.abs(onnx.predict_chunk(obs) - expected).max() <= 1e-4
        assert np.abs(torch_backend.predict_chunk(obs) - expected).max() <= 1e-5
    other = init_act(tmp_path / "front_only", ["front"], 6, SIZE, chunk_size=20, small=True, seed=3)
    with pytest.raises(NsmError, match="takes other inputs or other normalization stats"):
        make_ensemble(tmp_path / "bad", [models[0].path, other.path])
    assert not (tmp_path / "bad").exists()
    with pytest.raises(NsmError, match="needs at least two policy folders"):
        make_ensemble(tmp_path / "one", [models[0].path])
    shutil.copy2(models[0].path / "model.safetensors", both.path / "members" / "1" / "model.safetensors")
    (both.path / "members" / "1" / "config.json").write_text(json.dumps(both.config | {"n_heads": 2}))
    with pytest.raises(NsmError, match="made from another config or other normalization stats"):
        LeRobotChunkPolicy(both.path, "onnxruntime")


def test_diffusion_runs_on_the_torch_backend(tmp_path):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    features = {"observation.state": PolicyFeature(FeatureType.STATE, (6,)),
                "observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, *SIZE))}
    cfg = DiffusionConfig(input_features=features, output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
                          device="cpu", pretrained_backbone_weights=None, crop_shape=(84, 84), down_dims=(32, 64),
                          num_inference_steps=4, horizon=16, n_action_steps=8)
    one, zero = torch.ones(6), torch.zeros(6)
    stats = {k: {"mean": zero, "std": one, "min": -one, "max": one} for k in ("observation.state", "action")}
    stats["observation.images.front"] = {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.25)}
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    for part in (DiffusionPolicy(cfg), pre, post):
        part.save_pretrained(tmp_path)
    policy = LeRobotChunkPolicy(tmp_path, "torch")
    assert policy.chunk_size == 8
    for seed in range(2):  # the second call sees a history of two observations (n_obs_steps = 2)
        chunk = policy.predict_chunk(observation(["front"], seed))
        assert chunk.shape == (8, 6) and np.all(np.isfinite(chunk))
    with pytest.raises(NsmError, match="ONNX export supports ACT policies"):
        export_onnx(PolicyDir(tmp_path))


def test_demo_drives_the_sim_arm_with_act_on_onnxruntime(tmp_path):
    """The whole path with a learned-policy runtime: sim cameras -> ACT (ONNX Runtime) ->
    async queue -> safety -> arm, recorded; random weights, so only the plumbing is judged."""
    import h5py

    from nsm.app.demo import Demo
    from nsm.app.demo_settings import demo_config

    contract = load_contract("so101")
    cam = contract.camera("front")
    d = init_act(tmp_path / "act", ["front"], 6, (cam.height, cam.width), chunk_size=30, small=True)
    export_onnx(d)
    summary = Demo(demo_config(seconds=3.0, out=tmp_path / "run", camera=["front"], policy=d.path,
                                      db_url=f"sqlite:///{tmp_path / 't.db'}")).run()
    assert summary.chunks >= 2 and summary.rejected_commands == 0
    with h5py.File(summary.episodes[0]) as f:
        assert f.attrs["policy"] == "act:act:onnxruntime"
        action = f["action"][:]
    assert np.all(np.isfinite(action)) and np.all(action >= contract.lower) and np.all(action <= contract.upper)
    assert np.ptp(action, axis=0).max() > 0  # the policy's actions reached the arm


def test_demo_refuses_a_policy_for_other_cameras_before_moving(tmp_path, act_dir):
    from nsm.app.demo import Demo
    from nsm.app.demo_settings import demo_config

    with pytest.raises(NsmError, match="policy expects camera 'front' at 96x128"):
        Demo(demo_config(seconds=1.0, out=tmp_path / "run", policy=act_dir.path))
    assert not list((tmp_path / "run").glob("*.hdf5*"))


def test_cli_policy_commands(tmp_path):
    """init -> export from the command line; download offline is one clear error."""
    import os
    import subprocess
    import sys

    def nsm(*args, **env):
        return subprocess.run([sys.executable, "-m", "nsm.cli", "policy", *args], capture_output=True, text=True,
                              timeout=300, env={**os.environ, **env})

    made = nsm("init", str(tmp_path / "p"), "--cameras", "front", "--image-size", "64x96", "--chunk-size", "10", "--small")
    assert made.returncode == 0, made.stderr
    assert PolicyDir(tmp_path / "p").features.cameras == {"front": (64, 96)}
    exported = nsm("export", str(tmp_path / "p"))
    assert exported.returncode == 0 and (tmp_path / "p" / "onnx" / "model.onnx").is_file(), exported.stderr
    again = nsm("init", str(tmp_path / "p"))
    assert again.returncode == 2 and "is not empty; choose a new folder" in again.stderr
    offline = nsm("download", "lerobot/act_aloha_sim_transfer_cube_human", str(tmp_path / "d"), HF_HUB_OFFLINE="1")
    assert offline.returncode == 2 and "the Hugging Face Hub is unreachable" in offline.stderr
    assert len([line for line in offline.stderr.splitlines() if line.strip()]) == 1
    for env, message in (({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
                         ({"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "none"}, "the Hugging Face Hub is unreachable")):
        pushed = nsm("push", str(tmp_path / "p"), "me/so101-act", **env)  # port 9 on localhost: nothing listens
        assert pushed.returncode == 2 and message in pushed.stderr, pushed.stderr
        assert len([line for line in pushed.stderr.splitlines() if line.strip()]) == 1


def test_a_policy_folder_records_its_resize_and_refuses_another(tmp_path, contract):
    """nsm_image_input.json: the model's input is made from the cameras' size by one resize;
    a folder that says otherwise (other sizes, another method) is refused before it runs."""
    import json

    from nsm.policy.image_input import FILE, ImageInput, to_model_size
    from nsm.policy.model_dir import PolicyDir

    d = init_act(tmp_path / "act", ["front"], 6, (96, 128), chunk_size=10, small=True)
    ImageInput({"front": (240, 320)}, (96, 128)).write(d.path)
    features = PolicyDir(d.path).features
    assert features.cameras == {"front": (96, 128)} and features.camera_sizes == {"front": (240, 320)}
    features.check_against(contract)  # the contract's front camera is 240x320: it fits
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    small = to_model_size(frame, (96, 128))
    assert small.shape == (96, 128, 3) and small.dtype == np.uint8 and to_model_size(small, (96, 128)) is small
    policy = LeRobotChunkPolicy(d.path, "torch", contract)
    batch = policy.batch(Observation(0, 0.0, np.zeros(6), {"front": frame}))
    assert tuple(batch["observation.images.front"].shape) == (1, 3, 96, 128)
    (d.path / FILE).write_text(json.dumps({"camera_sizes": {"front": [240, 320]}, "model_size": [120, 160],
                                           "method": "cv2.resize INTER_AREA"}))
    with pytest.raises(NsmError, match="config.json takes"):
        PolicyDir(d.path)
    (d.path / FILE).write_text(json.dumps({"camera_sizes": {"front": [240, 320]}, "model_size": [96, 128],
                                           "method": "PIL bilinear"}))
    with pytest.raises(NsmError, match="resized with 'PIL bilinear'"):
        PolicyDir(d.path)
