"""`lerobot-train` with ACT's ResNet normalized while it learns from scratch (run by `nsm train`).

LeRobot's ACT builds its ResNet with `FrozenBatchNorm2d`: right for ImageNet weights, whose
BatchNorm statistics come with them. nsm cannot download those weights, so the backbone
starts from scratch, and a frozen BatchNorm that was never fitted is the identity: the
ResNet trains with no normalization at all (activations grow with every residual block).
Here the backbone's BatchNorm learns during training (`nn.BatchNorm2d`); the checkpoint it
leaves is LeRobot's own ACT — the same keys, loaded back into `FrozenBatchNorm2d`, which
then applies the running statistics exactly as BatchNorm does in eval mode. Nothing else
in lerobot-train changes: `python -m nsm.policy.lerobot_train_main` takes its arguments.
"""
from torch import nn


def main() -> None:
    from lerobot.policies.act import modeling_act
    from lerobot.scripts import lerobot_train

    modeling_act.FrozenBatchNorm2d = nn.BatchNorm2d  # read when ACT builds its backbone
    lerobot_train.main()


if __name__ == "__main__":
    main()
