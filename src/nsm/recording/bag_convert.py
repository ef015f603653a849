"""A rosbag2 bag (MCAP or SQLite storage) -> an HDF5 episode at the control rate.

Bags hold each stream at its own rate and jitter (cameras slower than the arm, messages
late). The episode is resampled on a fixed clock at the contract's fps, from the first to
the last `joint_states`: every tick takes the nearest message of each stream by header
stamp. A tick where some stream's nearest message is further than `max_skew` seconds is
left out and counted (a camera that stalled must not be papered over with a stale
frame). The robot contract comes from the bag's `robot_contract.yaml` (nsm writes it) or
is given; joint names in the messages must match it.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from nsm import image_codec
from nsm.contract import RobotContract, load_contract
from nsm.errors import NsmError
from nsm.recording.background import EpisodeFrame
from nsm.recording.hdf5_writer import Hdf5EpisodeWriter


@dataclass
class BagConversion:
    path: Path
    frames: int
    skipped_ticks: int  # ticks left out because a stream was further than max_skew


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _read(bag: Path, names: list[str]) -> dict[str, tuple[np.ndarray, list]]:
    """topic suffix ('joint_states', 'joint_commands', 'camera/<cam>') -> (stamps ns, values)."""
    from rosbags.highlevel import AnyReader

    streams: dict[str, tuple[list, list]] = {}
    with AnyReader([bag]) as reader:
        for connection, _, raw in reader.messages():
            topic = connection.topic
            if topic.endswith("/joint_states") or topic.endswith("/joint_commands"):
                key = topic.rsplit("/", 1)[1]
                msg = reader.deserialize(raw, connection.msgtype)
                if list(msg.name) != names:
                    raise NsmError(f"{topic} has joints {list(msg.name)}, the contract has {names}")
                value = (np.asarray(msg.position, float), np.asarray(msg.velocity, float))
            elif topic.endswith("/image_raw") and "/camera/" in topic:
                key = "camera/" + topic.split("/camera/")[1].removesuffix("/image_raw")
                msg = reader.deserialize(raw, connection.msgtype)
                if msg.encoding != "rgb8":
                    raise NsmError(f"{topic}: encoding {msg.encoding} not supported (rgb8)")
                value = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
            elif topic.endswith("/image_raw/compressed") and "/camera/" in topic:
                key = "camera/" + topic.split("/camera/")[1].removesuffix("/image_raw/compressed")
                msg = reader.deserialize(raw, connection.msgtype)
                try:
                    value = image_codec.decode_image(msg.data, msg.format)
                except NsmError as exc:
                    raise NsmError(f"{topic}: {exc}") from None
            else:
                continue
            stamps, values = streams.setdefault(key, ([], []))
            stamps.append(_stamp(msg))
            values.append(value)
    out = {}
    for key, (stamps, values) in streams.items():
        order = np.argsort(stamps, kind="stable")
        out[key] = (np.asarray(stamps, np.int64)[order], [values[i] for i in order])
    return out


def _nearest(stamps: np.ndarray, tick: int) -> tuple[int, float]:
    i = int(np.searchsorted(stamps, tick))
    candidates = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
    best = min(candidates, key=lambda j: abs(int(stamps[j]) - tick))
    return best, abs(int(stamps[best]) - tick) / 1e9


def bag_to_hdf5(bag: Path, out: Path, contract: RobotContract | None = None, max_skew: float = 0.05,
                policy: str = "") -> BagConversion:
    """Write `out` (an episode_<n>.hdf5 path) from `bag`, resampled at the contract's fps."""
    if contract is None:
        stored = bag / "robot_contract.yaml"
        if not stored.is_file():
            raise NsmError(f"{bag} has no robot_contract.yaml; pass the robot (e.g. --robot so101)")
        contract = load_contract(stored)
    streams = _read(bag, contract.joint_names)
    for needed in ("joint_states", "joint_commands"):
        if needed not in streams:
            raise NsmError(f"{bag} has no */{needed} topic; it is needed for observation.state / action")
    cameras = sorted(k.removeprefix("camera/") for k in streams if k.startswith("camera/"))
    for cam in cameras:
        spec, shape = contract.camera(cam), streams[f"camera/{cam}"][1][0].shape
        if shape != (spec.height, spec.width, 3):
            raise NsmError(f"camera {cam}: the bag has {shape[1]}x{shape[0]} images, the contract "
                           f"{spec.width}x{spec.height}; record at the contract's size or give a matching contract")
    state_stamps = streams["joint_states"][0]
    period_ns = int(round(1e9 / contract.fps))
    ticks = range(int(state_stamps[0]), int(state_stamps[-1]) + 1, period_ns)
    episode = yaml.safe_load((bag / "episode.yaml").read_text()) if (bag / "episode.yaml").is_file() else {}
    writer = Hdf5EpisodeWriter(out, contract, cameras, sim=bool(episode.get("sim", False)),
                               policy=policy or str(episode.get("policy", "")), queue_size=len(ticks) + 1)
    skipped = 0
    for tick in ticks:
        picked, worst = {}, 0.0
        for key, (stamps, values) in streams.items():
            index, skew = _nearest(stamps, tick)
            picked[key], worst = values[index], max(worst, skew)
        if worst > max_skew:
            skipped += 1
            continue
        (qpos, qvel), (action, _) = picked["joint_states"], picked["joint_commands"]
        images = {cam: picked[f"camera/{cam}"] for cam in cameras}
        writer.add_frame(EpisodeFrame(qpos, qvel if len(qvel) else np.zeros_like(qpos), action, images,
                                      (tick - ticks[0]) / 1e9), block=True)  # a converter waits; it never drops
    path = writer.close(success=episode.get("success"))
    return BagConversion(path, writer.frames, skipped)
