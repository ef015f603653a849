"""int8 ONNX: ONNX Runtime static quantization, calibrated on the robot's own recorded frames.

`nsm policy export MODEL --format onnx-int8 --calibration EPISODES` takes frames spread over
the HDF5 episodes in EPISODES (what the cameras and joints gave; e.g. `nsm sim collect`'s
OUT/episodes), turns each into the exact input the runtime feeds the network
(`LeRobotChunkPolicy.batch`: the model's resize, LeRobot's normalization), and lets ONNX
Runtime pick activation ranges from them (QDQ format, per-channel int8 weights in a 7-bit range, uint8
activations). Written beside the fp32 export as onnx/model.int8.onnx with int8.json
(calibration source, frame count, the fp32 export's stats hash); the backend
`onnxruntime-int8` loads it and refuses one made from other stats.

Whether int8 keeps the task is measured, not assumed: bench/closed_loop.py runs it on the
same held-out seeds as the fp32 model.

Why uint8 activations (U8S8) rather than ONNX Runtime's default int8 (S8S8): on x86 ONNX
Runtime's fast integer kernels take unsigned activations. Measured on the cpu recipe's model
(2 threads, AVX-512 VNNI, interleaved, the same calibration): fp32 14.2 ms, S8S8 QDQ 18.7 ms
(slower than fp32), U8S8 QDQ 7.0 ms, both int8 models equally far from fp32's output; U8S8 in
QOperator format was as fast but far less accurate. (ARM CPUs have their own int8 kernels: measure there.)
"""
import json
from collections.abc import Callable
from pathlib import Path

from nsm.errors import NsmError
from nsm.policy.export import ensure_onnx_export, input_names, onnx_dir
from nsm.policy.model_dir import PolicyDir
from nsm.recording.episodes import episode_files, sampled_observations

INT8_FILE = "model.int8.onnx"
INT8_META = "int8.json"


def calibration_feeds(policy_dir: PolicyDir, episodes: Path, frames: int) -> list[dict]:
    """Network inputs (name -> float32 array) for `frames` frames spread over the episodes."""
    from nsm.contract import Observation
    from nsm.policy.lerobot_policy import LeRobotChunkPolicy

    files = episode_files(episodes)
    if not files:
        raise NsmError(f"{episodes} holds no episode_<n>.hdf5 to calibrate on; pass the episodes the model was "
                       "trained from (e.g. runs/collect/episodes)")
    policy = LeRobotChunkPolicy(policy_dir.path, backend="onnxruntime")
    names, per_episode = input_names(policy_dir), max(1, -(-frames // len(files)))
    feeds = []
    for path in files:
        for state, images in sampled_observations(path, per_episode):
            batch = policy.batch(Observation(0, 0.0, state, images))
            feeds.append({name: batch[name].numpy() for name in names})
    return feeds[:frames]


def quantize_int8(policy_dir: PolicyDir, episodes: Path, frames: int = 200,
                  on_progress: Callable[[str], None] | None = None) -> Path:
    """Write onnx/model.int8.onnx calibrated on `frames` frames of the episodes in `episodes`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = ensure_onnx_export(policy_dir)
    feeds = calibration_feeds(policy_dir, episodes, frames)
    if on_progress:
        on_progress(f"calibrating on {len(feeds)} frames")

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    prepared = onnx_dir(policy_dir) / "model.int8-prep.onnx"
    out = onnx_dir(policy_dir) / INT8_FILE
    try:
        quant_pre_process(str(fp32), str(prepared))  # shape inference + graph cleanup, as ORT recommends first
        # reduce_range: 7-bit weights. ONNX Runtime's uint8 x int8 kernel on x86 CPUs with AVX2 but
        # no VNNI (VPMADDUBSW) saturates its 16-bit pair sums at full 8-bit range: on such a machine
        # (AMD EPYC, AVX2 only) this export's chunks differed from fp32 by 4.2% of the joints' motion
        # (test_closed_loop's int8 test, bound 2%); with 7-bit weights it passes. One file for every robot.
        quantize_static(str(prepared), str(out), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True)
    finally:
        prepared.unlink(missing_ok=True)
    meta = {"file": INT8_FILE, "from": fp32.name, "stats_hash": policy_dir.stats_hash(),
            "calibration": {"episodes": str(episodes), "frames": len(feeds)},
            "format": "QDQ, per-channel int8 weights (7-bit range), uint8 activations (onnxruntime.quantization.quantize_static)"}
    (onnx_dir(policy_dir) / INT8_META).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def checked_int8(policy_dir: PolicyDir) -> Path:
    """The int8 model, after checking it was made from this directory's stats."""
    meta_path = onnx_dir(policy_dir) / INT8_META
    if not meta_path.is_file():
        raise NsmError(f"{policy_dir.path} has no int8 model; run `nsm policy export {policy_dir.path} --format onnx-int8 "
                       "--calibration EPISODES_FOLDER`")
    meta = json.loads(meta_path.read_text())
    if meta.get("stats_hash") != policy_dir.stats_hash():
        raise NsmError(f"the int8 model in {policy_dir.path} was made from other normalization stats; re-run "
                       f"`nsm policy export {policy_dir.path} --format onnx-int8 --calibration EPISODES_FOLDER`")
    return onnx_dir(policy_dir) / meta["file"]
