"""A LeRobot policy directory as an nsm ChunkPolicy, on any backend.

predict_chunk(obs): check the observation -> the model's image size (nsm.policy.image_input,
the resize its training data had) -> uint8 HWC images to float CHW in [0, 1]
(what LeRobot's env wrappers feed) -> LeRobot's preprocessor (batch dim, normalization)
-> backend -> LeRobot's postprocessor (unnormalize) -> (chunk, n) numpy. Only the backend
step differs between torch, onnxruntime and tensorrt.
"""
import numpy as np

from nsm.contract import Observation, RobotContract
from nsm.errors import NsmError
from nsm.policy.backends import make_backend
from nsm.policy.image_input import to_model_size
from nsm.policy.model_dir import IMAGE_PREFIX, STATE_KEY, PolicyDir


class LeRobotChunkPolicy:
    def __init__(self, model_dir, backend: str = "onnxruntime", contract: RobotContract | None = None,
                 cameras: list[str] | None = None, threads: int | None = None, fp16: bool = False):
        self.dir = PolicyDir(model_dir)
        self.features = self.dir.features
        if contract is not None:
            self.features.check_against(contract, cameras)
        cfg = self.dir.load_config()
        self.pre, self.post = self.dir.load_processors(cfg)
        self.backend = make_backend(backend, self.dir, threads, fp16)
        models = f"x{1 + len(self.dir.members)}" if self.dir.members else ""
        self.name = f"{self.features.policy_type}{models}:{self.dir.path.name}:{backend}"
        self.chunk_size = self.features.chunk_size

    def batch(self, obs: Observation) -> dict:
        """The normalized batch for `obs` (LeRobot keys), after checking every input."""
        import torch

        f = self.features
        state = np.asarray(obs.state, dtype=np.float32)
        if state.shape != (f.state_dim,):
            raise NsmError(f"policy expects a state of {f.state_dim} values, got shape {state.shape}")
        if not np.all(np.isfinite(state)):
            raise NsmError(f"state contains NaN/Inf: {state.tolist()}")
        frame = {STATE_KEY: torch.from_numpy(state)}
        for name, size in f.cameras.items():
            image = obs.images.get(name)
            if image is None:
                raise NsmError(f"policy needs camera '{name}', observation has {', '.join(obs.images) or 'no cameras'}")
            h, w = f.camera_sizes[name]
            if image.shape != (h, w, 3) or image.dtype != np.uint8:
                raise NsmError(f"camera '{name}': policy expects ({h}, {w}, 3) uint8 RGB, got {image.shape} {image.dtype}")
            image = np.ascontiguousarray(to_model_size(image, size))  # the resize the training data had, if any
            frame[f"{IMAGE_PREFIX}{name}"] = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        return self.pre(frame)

    def reset(self) -> None:
        self.backend.reset()

    def predict_chunk(self, obs: Observation) -> np.ndarray:
        actions = self.post(self.backend.run(self.batch(obs)))
        return actions[0].numpy().astype(np.float64)
