"""Inference backends: run the policy network on normalized tensors, nothing else.

Every backend takes the batch LeRobot's preprocessor made and returns normalized actions
(1, chunk, action_dim) as a torch tensor for LeRobot's postprocessor, so normalization
and image scaling happen once, identically, whichever backend runs.

- torch: LeRobot's own `predict_action_chunk` (the reference; ACT and Diffusion); for an
  ensemble (nsm.policy.ensemble) the mean of each member's.
- onnxruntime: the ONNX export, CPU (or CUDA) execution provider.
- tensorrt: an engine built from the ONNX export with the TensorRT Python API, cached
  per TensorRT version, precision and GPU architecture. ACT's attention layers are not
  convertible by torch2trt (no MultiheadAttention converter), hence ONNX -> TensorRT.
"""
import collections
import os
from pathlib import Path
from typing import Protocol

from nsm.errors import NsmError
from nsm.policy.export import OUTPUT, checked_onnx, input_names
from nsm.policy.model_dir import PolicyDir
from nsm.settings import POLICY_BACKENDS as BACKENDS


class Backend(Protocol):
    name: str

    def run(self, batch: dict):
        """Normalized batch (LeRobot keys) -> normalized actions, torch tensor (1, chunk, n)."""

    def reset(self) -> None:
        """Forget past observations (a new episode starts)."""


class TorchBackend:
    """LeRobot's `predict_action_chunk`. Policies that look at several past observations
    (Diffusion: n_obs_steps = 2) get them stacked here, the first one repeated at start,
    as LeRobot's own select_action does."""

    name = "torch"

    def __init__(self, policies: list, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.policies = policies
        config = policies[0].config
        self.keys = list(config.input_features)
        self.history = collections.deque(maxlen=config.n_obs_steps)

    def reset(self) -> None:
        self.history.clear()

    def run(self, batch: dict):
        import torch

        if self.history.maxlen > 1:
            while len(self.history) < self.history.maxlen - 1:
                self.history.append(batch)
            self.history.append(batch)
            batch = {k: torch.stack([b[k] for b in self.history], dim=1) for k in self.keys}
        with torch.inference_mode():
            chunks = [p.predict_action_chunk(batch) for p in self.policies]
            return chunks[0] if len(chunks) == 1 else torch.stack(chunks).mean(0)


class OnnxRuntimeBackend:
    """ONNX Runtime with the settings measured fastest on small CPUs: intra-op threads =
    cores (capped by `threads`), one inter-op thread, no spinning (spinning threads steal
    the cores the control loop and cameras need)."""

    name = "onnxruntime"

    def __init__(self, policy_dir: PolicyDir, threads: int | None = None, providers: list[str] | None = None,
                 model: Path | None = None):
        """`model`: another export of the same network (the int8 one); default the fp32 export."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(model or checked_onnx(policy_dir)), options, providers=providers)
        self.inputs = input_names(policy_dir)

    def reset(self) -> None:
        """Nothing to forget: the exported graph sees one observation per call."""

    def run(self, batch: dict):
        import torch

        feed = {name: batch[name].numpy() for name in self.inputs}
        return torch.from_numpy(self.session.run([OUTPUT], feed)[0])


def engine_path(policy_dir: PolicyDir, fp16: bool) -> Path:
    import tensorrt as trt
    import torch

    major, minor = torch.cuda.get_device_capability()
    return policy_dir.path / "tensorrt" / f"{trt.__version__}-{'fp16' if fp16 else 'fp32'}-sm{major}{minor}.engine"


def build_engine(policy_dir: PolicyDir, fp16: bool = False) -> Path:
    """Build (or reuse) the TensorRT engine for this GPU from the checked ONNX export."""
    trt = _import_tensorrt()
    path = engine_path(policy_dir, fp16)
    if path.is_file():
        return path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(checked_onnx(policy_dir))):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise NsmError(f"TensorRT could not parse the ONNX export: {errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise NsmError("TensorRT failed to build the engine (see its log above)")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(engine))
    return path


def _import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise NsmError("backend 'tensorrt' needs TensorRT (JetPack ships it; on x86 `pip install tensorrt`); "
                       "use --backend onnxruntime here") from None
    import torch

    if not torch.cuda.is_available():
        raise NsmError("backend 'tensorrt' needs a CUDA GPU; use --backend onnxruntime")
    return tensorrt


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, policy_dir: PolicyDir, fp16: bool = False):
        import torch

        trt = _import_tensorrt()
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
            build_engine(policy_dir, fp16).read_bytes())
        self.context = self.engine.create_execution_context()
        self.inputs = input_names(policy_dir)
        f = policy_dir.features
        self.output = torch.empty((1, f.chunk_size, f.action_dim), dtype=torch.float32, device="cuda")

    def reset(self) -> None:
        """Nothing to forget: the exported graph sees one observation per call."""

    def run(self, batch: dict):
        import torch

        feeds = {name: batch[name].to("cuda").contiguous() for name in self.inputs}
        for name, tensor in feeds.items():
            self.context.set_tensor_address(name, tensor.data_ptr())
        self.context.set_tensor_address(OUTPUT, self.output.data_ptr())
        stream = torch.cuda.current_stream()  # the stream the copies above were queued on
        self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return self.output.cpu()


def make_backend(name: str, policy_dir: PolicyDir, threads: int | None = None, fp16: bool = False) -> Backend:
    if name == "torch":
        return TorchBackend(policy_dir.load_policies(), threads)
    if name == "onnxruntime":
        return OnnxRuntimeBackend(policy_dir, threads)
    if name == "onnxruntime-int8":
        from nsm.policy.quantize import checked_int8

        backend = OnnxRuntimeBackend(policy_dir, threads, model=checked_int8(policy_dir))
        backend.name = name
        return backend
    if name == "tensorrt":
        return TensorRTBackend(policy_dir, fp16)
    raise NsmError(f"unknown backend '{name}'; use one of {', '.join(BACKENDS)}")
