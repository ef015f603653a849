"""A LeRobot policy directory (what `save_pretrained` writes), checked before anything loads.

    config.json, model.safetensors                 the policy (PreTrainedPolicy.save_pretrained)
    policy_preprocessor.json + *.safetensors       normalization stats (pipeline.save_pretrained)
    policy_postprocessor.json + *.safetensors
    onnx/ , tensorrt/                              written by `nsm policy export`
    nsm_ensemble.json, members/<n>/                more models whose chunks are averaged with
                                                   this one's (`nsm policy ensemble`)

Loading is local only: nothing here touches the Hugging Face Hub.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from nsm.contract import RobotContract
from nsm.errors import NsmError
from nsm.policy.image_input import FILE as IMAGE_INPUT_FILE
from nsm.policy.image_input import ImageInput

REQUIRED = ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json")
STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
ACTION_KEY = "action"
ENSEMBLE_FILE = "nsm_ensemble.json"


@dataclass(frozen=True)
class PolicyFeatures:
    """What a policy eats and returns, read from its config.json."""

    policy_type: str
    state_dim: int
    cameras: dict[str, tuple[int, int]]  # name -> (height, width) the model takes, in its camera order
    action_dim: int
    chunk_size: int
    camera_sizes: dict[str, tuple[int, int]]  # name -> (height, width) the camera must give (nsm_image_input.json)

    def check_against(self, contract: RobotContract, cameras: list[str] | None = None) -> None:
        """The model must fit the robot: joint count, and every camera it needs, at its size."""
        n = len(contract.joints)
        if self.state_dim != n or self.action_dim != n:
            raise NsmError(f"policy expects state {self.state_dim} / action {self.action_dim} values, robot "
                           f"{contract.robot} has {n} joints; use a policy trained for this robot")
        available = cameras if cameras is not None else [c.name for c in contract.cameras]
        for name, (h, w) in self.camera_sizes.items():
            if name not in available:
                raise NsmError(f"policy needs camera '{name}', robot offers {', '.join(available) or 'none'}; "
                               f"add camera '{name}' or use a policy trained for these cameras")
            spec = contract.camera(name)
            if (spec.height, spec.width) != (h, w):
                raise NsmError(f"policy expects camera '{name}' at {h}x{w}, robot contract has "
                               f"{spec.height}x{spec.width}; set the camera resolution to {h}x{w}")


class PolicyDir:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_dir():
            raise NsmError(f"policy directory {self.path} does not exist; create one with `nsm policy init` or "
                           f"`nsm policy download`")
        missing = [f for f in REQUIRED if not (self.path / f).is_file()]
        if missing:
            raise NsmError(f"policy directory {self.path} is missing {', '.join(missing)}; it needs the files "
                           f"LeRobot's save_pretrained writes for the policy and both processors")
        self.config = json.loads((self.path / "config.json").read_text())
        self.features = self._features()
        self.members = self._members()

    def _members(self) -> "list[PolicyDir]":
        """The other models of an ensemble (none for one model). An ensemble's folder is its
        first model, whole, so LeRobot and every tool that takes one policy still load it; nsm's
        runtime averages the chunks of all of them (nsm.policy.export, nsm.policy.backends).
        Members must take the same inputs and share the normalization stats: the average is
        taken on normalized actions, before the one postprocessor."""
        path = self.path / ENSEMBLE_FILE
        if not path.is_file():
            return []
        members = [PolicyDir(self.path / m) for m in json.loads(path.read_text())["members"]]
        for m in members:
            if m.members:
                raise NsmError(f"{m.path} is an ensemble itself; list its models in {path} one by one")
            if m.features != self.features or m.processor_bytes() != self.processor_bytes():
                raise NsmError(f"{m.path} takes other inputs or other normalization stats than {self.path}; "
                               f"an ensemble's models must be trained on the same dataset for the same robot")
        return members

    def processor_bytes(self) -> dict[str, bytes]:
        """The pre/post-processor files (the normalization stats), name -> content."""
        return {p.name: p.read_bytes() for p in sorted(self.path.glob("policy_*processor*"))}

    def _features(self) -> PolicyFeatures:
        inputs, outputs = self.config.get("input_features", {}), self.config.get("output_features", {})
        if STATE_KEY not in inputs or ACTION_KEY not in outputs:
            raise NsmError(f"{self.path}/config.json must declare input '{STATE_KEY}' and output '{ACTION_KEY}'")
        cameras = {k.removeprefix(IMAGE_PREFIX): tuple(v["shape"][1:]) for k, v in inputs.items()
                   if k.startswith(IMAGE_PREFIX)}
        kind = self.config.get("type", "unknown")
        # ACT's predict_action_chunk returns chunk_size rows; Diffusion's returns n_action_steps.
        chunk = self.config["chunk_size"] if kind == "act" else self.config.get("n_action_steps", 1)
        camera_sizes = dict(cameras)
        resized = ImageInput.read(self.path)
        if resized is not None:
            if set(resized.camera_sizes) != set(cameras) or any(s != resized.model_size for s in cameras.values()):
                raise NsmError(f"{self.path / IMAGE_INPUT_FILE} says {resized.model_size} from cameras "
                               f"{sorted(resized.camera_sizes)}, config.json takes {cameras}; train the model again")
            camera_sizes = dict(resized.camera_sizes)
        return PolicyFeatures(kind, inputs[STATE_KEY]["shape"][0], cameras, outputs[ACTION_KEY]["shape"][0], int(chunk),
                              camera_sizes)

    def stats_hash(self) -> str:
        """Hash of the weights' config and the normalization stats (and an ensemble's members):
        an export made from other stats, another config or other members must not be used
        with this directory."""
        digest = hashlib.sha256()
        for name, content in {"config.json": (self.path / "config.json").read_bytes(), **self.processor_bytes()}.items():
            digest.update(name.encode())
            digest.update(content)
        for m in self.members:
            digest.update(str(m.path.relative_to(self.path)).encode() + m.stats_hash().encode())
        return digest.hexdigest()[:16]

    def load_config(self):
        import lerobot.policies  # noqa: F401  registers the policy config types (act, diffusion, ...)
        from lerobot.configs.policies import PreTrainedConfig

        cfg = PreTrainedConfig.from_pretrained(self.path)
        cfg.device = "cpu"
        return cfg

    def load_processors(self, cfg=None):
        """LeRobot's saved pre/post-processor pipelines (normalization stats), on the CPU."""
        from lerobot.policies.factory import make_pre_post_processors

        on_cpu = {"device_processor": {"device": "cpu"}}
        return make_pre_post_processors(cfg or self.load_config(), pretrained_path=str(self.path),
                                        preprocessor_overrides=on_cpu, postprocessor_overrides=on_cpu)

    def load_policies(self) -> list:
        """LeRobot's policy for this model and each member (one for a single model)."""
        return [self.load_policy()] + [m.load_policy() for m in self.members]

    def load_policy(self, cfg=None):
        """LeRobot's own policy class with the saved weights, in eval mode on the CPU; an ACT
        whose ResNet learned GroupNorm is built with it (nsm.policy.backbone_norm), every weight
        required to fit."""
        from lerobot.policies.factory import get_policy_class

        from nsm.policy.backbone_norm import act_built_with, saved_norm

        cfg = cfg or self.load_config()
        norm = (saved_norm(self.path / "model.safetensors") if cfg.type == "act" else None) or "batch"
        with act_built_with(norm):
            policy = get_policy_class(cfg.type).from_pretrained(self.path, config=cfg, strict=norm == "group")
        return policy.eval()
