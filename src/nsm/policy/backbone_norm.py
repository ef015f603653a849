"""How ACT's ResNet normalizes when it learns from scratch, in one place.

LeRobot's ACT builds its ResNet with `FrozenBatchNorm2d`: right for ImageNet weights, whose
statistics come with them; nsm cannot download those, so its backbone starts from scratch and
learns one of two normalizations (`nsm train --backbone-norm`):

- `batch`: `nn.BatchNorm2d` while training. The checkpoint is LeRobot's stock ACT: its frozen
  layers apply the learned running statistics, as BatchNorm does in eval mode. Training
  normalizes each camera's batch by its own statistics, eval by the running ones: a skew.
- `group`: `nn.GroupNorm` with a group per 16 channels (Diffusion Policy's choice for its
  from-scratch ResNet): each image normalized by its own statistics, the same in training and
  in eval. Its checkpoint has no running statistics, which LeRobot's stock ACT cannot express:
  LeRobot loads weights with strict=False, so it would put them into FrozenBatchNorm2d without a
  word. nsm tells the two apart by the checkpoint's keys (`saved_norm`) and builds GroupNorm to
  load such a model (nsm.policy.model_dir.PolicyDir.load_policy).
"""
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NORMS = ("batch", "group")
CHANNELS_PER_GROUP = 16
# a key every ACT ResNet checkpoint has, and its BatchNorm counterpart that only `batch` has
BACKBONE_NORM_KEY = "model.backbone.bn1.weight"
RUNNING_STATS_KEY = "model.backbone.bn1.running_mean"


def group_norm(channels: int):
    from torch import nn

    return nn.GroupNorm(channels // CHANNELS_PER_GROUP, channels)


def training_layer(norm: str):
    """The layer ACT's ResNet learns with (lerobot-train builds the backbone with it)."""
    from torch import nn

    return group_norm if norm == "group" else nn.BatchNorm2d


@contextmanager
def act_built_with(norm: str) -> Iterator[None]:
    """LeRobot's ACT built inside this block loads a `norm` checkpoint: GroupNorm layers for
    `group`; LeRobot's own FrozenBatchNorm2d for `batch`."""
    from lerobot.policies.act import modeling_act

    stock = modeling_act.FrozenBatchNorm2d
    if norm == "group":
        modeling_act.FrozenBatchNorm2d = group_norm
    try:
        yield
    finally:
        modeling_act.FrozenBatchNorm2d = stock


def saved_norm(weights: Path) -> str | None:
    """`group` or `batch` for an ACT checkpoint (model.safetensors) with a ResNet, None otherwise."""
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        keys = set(f.keys())
    if BACKBONE_NORM_KEY not in keys:
        return None
    return "batch" if RUNNING_STATS_KEY in keys else "group"
