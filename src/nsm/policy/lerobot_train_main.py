"""`lerobot-train` with these changes for a policy learned from scratch (run by `nsm train`).

1. ACT's ResNet normalized while it learns. LeRobot's ACT builds its ResNet with
   `FrozenBatchNorm2d`: right for ImageNet weights, whose BatchNorm statistics come with
   them. nsm cannot download those weights, so the backbone starts from scratch, and a
   frozen BatchNorm that was never fitted is the identity: the ResNet trains with no
   normalization at all. Here the backbone's normalization learns during training:
   BatchNorm (`nn.BatchNorm2d`; the checkpoint it leaves is LeRobot's own ACT — the same keys,
   loaded back into `FrozenBatchNorm2d`, which then applies the running statistics exactly as
   BatchNorm does in eval mode) or, with `--nsm-backbone-norm=group`, GroupNorm
   (nsm.policy.backbone_norm says why and how such a checkpoint loads).
2. `--nsm-state-noise=SIGMA`: Gaussian noise (rad, per joint) added to each training item's
   joint state, the action targets left as they are. A policy trained on clean states copies
   the state into its targets (it moved its predicted grasp with 77-85% of a pan offset put
   into the state alone, the images unchanged), so in closed loop an arm that drifted off the
   demonstrations stays off: the noise makes the images, not the state, say where to go.
3. `--nsm-in-memory`: the dataset's frames and columns held in memory, so that an item costs
   indexing instead of LeRobot's per-item work (a thread pool made for each item to decode its
   cameras' frames, the action chunk read from Arrow): lerobot-train's data_s 0.058 -> 0.021 s
   a step (0.091 -> 0.035 with three models side by side on 2 cores,
   where loading takes cores from the training; bench/results/train_step_in_memory.json).

4. AdamW's fused kernel (`fused=True`: the same update in one pass over the weights instead of
   a dozen small operations per tensor): a cpu-recipe step 0.615 -> 0.550 s each with three
   models side by side on 2 cores (fwd + bwd + AdamW with bf16 autocast on synthetic batches,
   one-off, three runs each).

Everything else is lerobot-train's: `python -m nsm.policy.lerobot_train_main` takes its
arguments (and the ones above). The checkpoint is LeRobot's ACT, unchanged in layout.
"""
import sys

from nsm.policy.backbone_norm import training_layer
from nsm.policy.model_dir import STATE_KEY

NOISE_ARG = "--nsm-state-noise="
BACKBONE_ARG = "--nsm-backbone="
IN_MEMORY_ARG = "--nsm-in-memory"
NORM_ARG = "--nsm-backbone-norm="


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


def fused_adamw(config_cls: type) -> None:
    """Optimizers that `config_cls` (LeRobot's AdamWConfig) builds use torch's fused AdamW kernel."""
    from dataclasses import asdict

    import torch

    def build(self, params):
        kwargs = asdict(self)
        kwargs.pop("grad_clip_norm")  # lerobot-train's, not the optimizer's (as LeRobot's own build)
        return torch.optim.AdamW(params, **kwargs, fused=True)

    config_cls.build = build


def hold_in_memory(video_utils, reader_cls: type) -> None:
    """Items of `reader_cls` (LeRobot's DatasetReader) built from memory. Each video is decoded
    whole on first use by LeRobot's own decoder, and LeRobot's torchcodec lookup
    (`video_utils.decode_video_frames`: frame indices from timestamps, its timestamp check, its
    conversion) answered from those frames, one camera after another instead of in a thread pool
    per item; each column an item reads (the action chunk) is stacked into one tensor once and
    indexed. The same tensors as LeRobot's reader gives (tested); datasets with depth cameras or
    without torchcodec keep LeRobot's own path."""
    import torch
    from torchcodec import FrameBatch

    class DecodedVideo:
        def __init__(self, decoder):
            self.metadata = decoder.metadata
            self.frames = decoder.get_frames_in_range(0, len(decoder))

        def get_frames_at(self, indices: list[int]) -> FrameBatch:
            return self.frames[indices]

    class DecodedVideos(video_utils.VideoDecoderCache):
        def __init__(self):
            super().__init__(max_size=None)
            self.decoded: dict[str, DecodedVideo] = {}

        def get_decoder(self, video_path):
            path = str(video_path)
            if path not in self.decoded:
                self.decoded[path] = DecodedVideo(super().get_decoder(path))
            return self.decoded[path]

    video_utils._default_decoder_cache = DecodedVideos()
    query_videos = reader_cls._query_videos

    def query_decoded(self, query_timestamps: dict[str, list[float]], ep_idx: int) -> dict:
        if self._meta.depth_keys or self._video_backend != "torchcodec":
            return query_videos(self, query_timestamps, ep_idx)
        ep = self._meta.episodes[ep_idx]
        return {key: video_utils.decode_video_frames(
            self.root / self._meta.get_video_file_path(ep_idx, key), [ep[f"videos/{key}/from_timestamp"] + t for t in ts],
            self._tolerance_s, self._video_backend, return_uint8=self._return_uint8).squeeze(0)
            for key, ts in query_timestamps.items()}

    def query_columns(self, query_indices: dict[str, list[int]]) -> dict:
        columns = self.__dict__.setdefault("_nsm_columns", {})
        result = {}
        for key, indices in query_indices.items():
            if key in self._meta.video_keys:
                continue
            if key not in columns:
                columns[key] = torch.stack(list(self.hf_dataset[key]))
            if self._absolute_to_relative_idx is not None:
                indices = [self._absolute_to_relative_idx[i] for i in indices]
            result[key] = columns[key][indices]
        return result

    reader_cls._query_videos = query_decoded
    reader_cls._query_hf_dataset = query_columns


def main() -> None:
    from lerobot.datasets import video_utils
    from lerobot.datasets.dataset_reader import DatasetReader
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.optim.optimizers import AdamWConfig
    from lerobot.policies.act import modeling_act
    from lerobot.scripts import lerobot_train

    fused_adamw(AdamWConfig)
    ours = [a for a in sys.argv[1:] if a.startswith((NOISE_ARG, BACKBONE_ARG, IN_MEMORY_ARG, NORM_ARG))]
    sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a not in ours)]
    norm = next((a.removeprefix(NORM_ARG) for a in ours if a.startswith(NORM_ARG)), "batch")
    modeling_act.FrozenBatchNorm2d = training_layer(norm)  # read when ACT builds its backbone
    for arg in ours:
        if arg.startswith(NOISE_ARG) and (sigma := float(arg.removeprefix(NOISE_ARG))) > 0:
            add_state_noise(LeRobotDataset, sigma)
        elif arg.startswith(BACKBONE_ARG):
            start_backbone_from(lerobot_train, arg.removeprefix(BACKBONE_ARG))
        elif arg == IN_MEMORY_ARG:
            hold_in_memory(video_utils, DatasetReader)
    lerobot_train.main()


if __name__ == "__main__":
    main()
