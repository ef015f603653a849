"""rosbag2 bags <-> episodes. A bag (MCAP or SQLite storage) -> an HDF5 episode at the
control rate; any episode (HDF5, LeRobotDataset) -> a bag with the topics nsm's recorder writes.

Bags hold each stream at its own rate and jitter (cameras slower than the arm, messages
late). The episode is resampled on a fixed clock at the contract's fps, from the first to
the last `joint_states` (rounded to whole periods): every tick takes the nearest message of
each stream by header stamp. A tick where some stream's nearest message is further than
`max_skew` seconds is left out and counted (a camera that stalled must not be papered over
with a stale frame). The robot contract comes from the bag's `robot_contract.yaml` (nsm
writes it) or is given; joint names in the messages must match it.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from nsm import image_codec
from nsm.contract import RobotContract, load_contract
from nsm.errors import NsmError
from nsm.recording.background import ChunkRecord, EpisodeFrame
from nsm.recording.episodes import EpisodeStreams
from nsm.recording.hdf5_writer import Hdf5EpisodeWriter
from nsm.recording.mcap_writer import McapEpisodeWriter


@dataclass
class BagConversion:
    path: Path
    frames: int
    skipped_ticks: int  # ticks left out because a stream was further than max_skew


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _read(bag: Path, names: list[str]) -> dict[str, tuple[np.ndarray, list]]:
    """topic suffix ('joint_states', 'joint_commands', 'camera/<cam>', 'action_chunk') -> (stamps ns, values);
    an action chunk's value is (actions, ns when it was logged: its arrival)."""
    from rosbags.highlevel import AnyReader

    streams: dict[str, tuple[list, list]] = {}
    if not (bag / "metadata.yaml").is_file():
        raise NsmError(f"{bag} is not a rosbag2 bag (no metadata.yaml); give the bag's folder")
    with AnyReader([bag]) as reader:
        for connection, logged, raw in reader.messages():
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
            elif topic.endswith("/action_chunk"):
                key = "action_chunk"
                msg = reader.deserialize(raw, connection.msgtype)
                if list(msg.joint_names) != names:
                    raise NsmError(f"{topic} has joints {list(msg.joint_names)}, the contract has {names}")
                value = (np.array([p.positions for p in msg.points], float).reshape(len(msg.points), len(names)), logged)
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


def _bag_contract(bag: Path, contract: RobotContract | None) -> RobotContract:
    if contract is not None:
        return contract
    stored = bag / "robot_contract.yaml"
    if not stored.is_file():
        raise NsmError(f"{bag} has no robot_contract.yaml; pass the robot (e.g. --robot so101)")
    return load_contract(stored)


def _episode_yaml(bag: Path) -> dict:
    """What nsm's recorder stores beside the bag (sim, policy, success), or nothing."""
    return yaml.safe_load((bag / "episode.yaml").read_text()) if (bag / "episode.yaml").is_file() else {}


def bag_streams(bag: Path, contract: RobotContract | None = None) -> EpisodeStreams:
    """A bag as EpisodeStreams for the viewers: every stream at its own header stamps, not
    resampled, in seconds since the first joint_states."""
    contract = _bag_contract(bag, contract)
    streams = _read(bag, contract.joint_names)
    if "joint_states" not in streams:
        raise NsmError(f"{bag} has no */joint_states topic; nothing to show")
    t0 = int(streams["joint_states"][0][0])
    joints = {kind: ((streams[key][0] - t0) / 1e9, np.array([position for position, _ in streams[key][1]]))
              for key, kind in (("joint_states", "state"), ("joint_commands", "command")) if key in streams}
    velocities = [velocity for _, velocity in streams["joint_states"][1]]
    if all(len(v) == len(contract.joints) for v in velocities):
        joints["velocity"] = (joints["state"][0], np.array(velocities))
    cameras = {key.removeprefix("camera/"): ((stamps - t0) / 1e9, values)
               for key, (stamps, values) in sorted(streams.items()) if key.startswith("camera/")}
    meta = {"robot": contract.robot, "fps": str(contract.fps)} | {k: str(v) for k, v in _episode_yaml(bag).items()}
    return EpisodeStreams(bag.name, contract.joint_names, joints, cameras, meta, _chunks(streams, t0), contract.period,
                          contract)


def _chunks(streams: dict, t0: int) -> list[ChunkRecord]:
    stamps, values = streams.get("action_chunk", ([], []))
    return [ChunkRecord(actions, (int(stamp) - t0) / 1e9, (logged - t0) / 1e9)
            for stamp, (actions, logged) in zip(stamps, values, strict=True)]


def bag_to_hdf5(bag: Path, out: Path, contract: RobotContract | None = None, max_skew: float = 0.05,
                policy: str = "") -> BagConversion:
    """Write `out` (an episode_<n>.hdf5 path) from `bag`, resampled at the contract's fps."""
    contract = _bag_contract(bag, contract)
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
    # whole control slots from the first to the last joint_states: a loop whose first tick
    # ran a few ms late spans a little less than its slots, and must not lose its last frame
    slots = int(round((int(state_stamps[-1]) - int(state_stamps[0])) / period_ns)) + 1
    ticks = range(int(state_stamps[0]), int(state_stamps[0]) + slots * period_ns, period_ns)
    episode = _episode_yaml(bag)
    writer = Hdf5EpisodeWriter(out, contract, cameras, sim=bool(episode.get("sim", False)),
                               policy=policy or str(episode.get("policy", "")), queue_size=len(ticks) + 1)
    for chunk in _chunks(streams, ticks[0]):
        writer.add_chunk(chunk, block=True)
    skipped = 0
    for tick in ticks:
        picked, worst = {}, 0.0
        for key, (stamps, values) in streams.items():
            if key == "action_chunk":
                continue  # events, not a stream sampled at each tick
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


def episode_to_bag(episode: EpisodeStreams, out: Path, *, start_ns: int, namespace: str = "/nsm",
                   image_format: str = "jpeg", compression: str | None = None) -> Path:
    """Write `episode` as the bag `out` (an episode_<n> folder), frame by frame with the
    recorder's writer (the same topics and messages as `nsm demo --bag`), its action chunks
    too; stamps are `start_ns` plus the recorded times. Complete, or nothing at `out`."""
    if episode.contract is None:
        raise NsmError(f"{episode.name}: no robot contract recorded with it; nsm knows robots by contract "
                       "(config/robots/*.yaml)")
    if out.exists():
        raise NsmError(f"{out} already exists; choose a new folder for the bag")
    times, state = episode.joints["state"]
    command = episode.joints["command"][1]
    velocity = episode.joints.get("velocity", (times, np.zeros_like(state)))[1]
    if len(command) != len(times) or any(len(frames) != len(times) for _, frames in episode.cameras.values()):
        raise NsmError(f"{episode.name}: its streams are not one frame per control tick; convert it to HDF5 first "
                       "(`nsm dataset from-bag`)")
    writer = McapEpisodeWriter(out, episode.contract, list(episode.cameras), start_ns=start_ns, namespace=namespace,
                               policy=episode.meta.get("policy", ""), image_format=image_format, compression=compression)
    try:
        for chunk in episode.chunks:
            writer.add_chunk(chunk, block=True)
        for i, t in enumerate(times):
            images = {camera: frames[i] for camera, (_, frames) in episode.cameras.items()}
            writer.add_frame(EpisodeFrame(state[i], velocity[i], command[i], images, float(t)), block=True)
    except BaseException:
        writer.discard()
        raise
    success = {"True": True, "False": False}.get(episode.meta.get("success", ""))
    return writer.close(success=success)
