"""`nsm policy init`: a randomly initialised LeRobot ACT policy directory, built offline.

For tests, benchmarks and trying the stack before a policy is trained. The ResNet18
backbone starts from random weights (`pretrained_backbone_weights=None`: the ImageNet
weights would be downloaded). Normalization stats are neutral (state/action mean 0, std 1;
images ImageNet mean/std) unless given.
"""
from pathlib import Path

from nsm.errors import NsmError
from nsm.policy.model_dir import ACTION_KEY, IMAGE_PREFIX, STATE_KEY, PolicyDir

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A transformer small enough to train on a 2-core CPU (the backbone stays ResNet18).
SMALL = {"dim_model": 128, "n_heads": 4, "dim_feedforward": 512, "n_encoder_layers": 2, "n_decoder_layers": 1}


def init_act(out: Path, cameras: list[str], state_dim: int, image_size: tuple[int, int], chunk_size: int = 100,
             small: bool = False, seed: int = 0) -> PolicyDir:
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.act.processor_act import make_act_pre_post_processors

    if not cameras:
        raise NsmError("ACT needs at least one camera (e.g. --cameras front)")
    if out.exists() and any(out.iterdir()):
        raise NsmError(f"{out} is not empty; choose a new folder for the policy")
    h, w = image_size
    inputs = {STATE_KEY: PolicyFeature(FeatureType.STATE, (state_dim,))}
    inputs |= {f"{IMAGE_PREFIX}{c}": PolicyFeature(FeatureType.VISUAL, (3, h, w)) for c in cameras}
    torch.manual_seed(seed)
    cfg = ACTConfig(input_features=inputs, output_features={ACTION_KEY: PolicyFeature(FeatureType.ACTION, (state_dim,))},
                    chunk_size=chunk_size, n_action_steps=chunk_size, pretrained_backbone_weights=None, device="cpu",
                    **(SMALL if small else {}))
    policy = ACTPolicy(cfg)
    stats = {STATE_KEY: {"mean": torch.zeros(state_dim), "std": torch.ones(state_dim)},
             ACTION_KEY: {"mean": torch.zeros(state_dim), "std": torch.ones(state_dim)}}
    for c in cameras:
        stats[f"{IMAGE_PREFIX}{c}"] = {"mean": torch.tensor(IMAGENET_MEAN).view(3, 1, 1),
                                       "std": torch.tensor(IMAGENET_STD).view(3, 1, 1)}
    pre, post = make_act_pre_post_processors(cfg, dataset_stats=stats)
    out.mkdir(parents=True, exist_ok=True)
    for part in (policy, pre, post):
        part.save_pretrained(out)
    return PolicyDir(out)
