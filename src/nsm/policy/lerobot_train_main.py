"""`lerobot-train` with three changes for a policy learned from scratch (run by `nsm train`).

1. ACT's ResNet normalized while it learns. LeRobot's ACT builds its ResNet with
   `FrozenBatchNorm2d`: right for ImageNet weights, whose BatchNorm statistics come with
   them. nsm cannot download those weights, so the backbone starts from scratch, and a
   frozen BatchNorm that was never fitted is the identity: the ResNet trains with no
   normalization at all. Here the backbone's BatchNorm learns during training
   (`nn.BatchNorm2d`); the checkpoint it leaves is LeRobot's own ACT — the same keys, loaded
   back into `FrozenBatchNorm2d`, which then applies the running statistics exactly as
   BatchNorm does in eval mode.
2. `--nsm-state-noise=SIGMA`: Gaussian noise (rad, per joint) added to each training item's
   joint state, the action targets left as they are. A policy trained on clean states copies
   the state into its targets (it moved its predicted grasp with 77-85% of a pan offset put
   into the state alone, the images unchanged), so in closed loop an arm that drifted off the
   demonstrations stays off: the noise makes the images, not the state, say where to go.

Everything else is lerobot-train's: `python -m nsm.policy.lerobot_train_main` takes its
arguments (and the one above). The checkpoint is LeRobot's ACT, unchanged in layout.
"""
import sys

from nsm.policy.model_dir import STATE_KEY

NOISE_ARG = "--nsm-state-noise="
BACKBONE_ARG = "--nsm-backbone="


def add_state_noise(dataset_cls: type, sigma: float) -> None:
    """Every item `dataset_cls` returns gets N(0, sigma^2) added to its joint state (torch's
    RNG, which lerobot-train seeds)."""
    import torch

    get_item = dataset_cls.__getitem__

    def noisy(self, idx):
        item = get_item(self, idx)
        if isinstance(item, dict) and STATE_KEY in item:
            item[STATE_KEY] = item[STATE_KEY] + sigma * torch.randn_like(item[STATE_KEY])
        return item

    dataset_cls.__getitem__ = noisy


def start_backbone_from(train_module, path: str) -> None:
    """Policies that `train_module.make_policy` creates from nothing get their backbone from `path`."""
    from safetensors.torch import load_file

    make_policy = train_module.make_policy

    def with_backbone(cfg, *args, **kwargs):
        policy = make_policy(cfg, *args, **kwargs)
        if cfg.pretrained_path is None:
            policy.model.backbone.load_state_dict(load_file(path))
        return policy

    train_module.make_policy = with_backbone


def main() -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.act import modeling_act
    from lerobot.scripts import lerobot_train
    from torch import nn

    modeling_act.FrozenBatchNorm2d = nn.BatchNorm2d  # read when ACT builds its backbone
    ours = [a for a in sys.argv[1:] if a.startswith((NOISE_ARG, BACKBONE_ARG))]
    sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a not in ours)]
    for arg in ours:
        if arg.startswith(NOISE_ARG) and (sigma := float(arg.removeprefix(NOISE_ARG))) > 0:
            add_state_noise(LeRobotDataset, sigma)
        elif arg.startswith(BACKBONE_ARG):
            start_backbone_from(lerobot_train, arg.removeprefix(BACKBONE_ARG))
    lerobot_train.main()


if __name__ == "__main__":
    main()
