"""MCAP bags of an episode, read back by two independent readers (rosbags and mcap)."""
import time

import numpy as np
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader

from nsm.recording.background import EpisodeFrame
from nsm.recording.mcap_writer import McapEpisodeWriter

FRAMES = 12


def frames(contract):
    rng = np.random.default_rng(3)
    return [EpisodeFrame(rng.normal(size=6), rng.normal(size=6), rng.normal(size=6),
                         {"wrist": rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)}, t / 30) for t in range(FRAMES)]


def test_bag_round_trips_through_rosbags_and_mcap(contract, tmp_path):
    start = time.time_ns()
    written = frames(contract)
    writer = McapEpisodeWriter(tmp_path / "episode_0", contract, ["wrist"], start_ns=start, policy="test")
    for frame in written:
        writer.add_frame(frame)
    bag = writer.close(success=True)
    assert bag == tmp_path / "episode_0" and (bag / "metadata.yaml").is_file()
    assert yaml.safe_load((bag / "episode.yaml").read_text())["frames"] == FRAMES
    assert yaml.safe_load((bag / "robot_contract.yaml").read_text())["robot"] == "so101"
    stamps = [start + int(round(f.timestamp * 1e9)) for f in written]

    by_reader = {}
    with AnyReader([bag]) as reader:
        for connection, stamp, raw in reader.messages():
            by_reader.setdefault(connection.topic, []).append((stamp, reader.deserialize(raw, connection.msgtype)))
    assert set(by_reader) == {"/nsm/joint_states", "/nsm/joint_commands", "/nsm/camera/wrist/image_raw"}

    with open(next(bag.glob("*.mcap")), "rb") as f:
        by_mcap = {}
        for _, channel, message, decoded in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            by_mcap.setdefault(channel.topic, []).append((message.log_time, decoded))

    for topic in by_reader:
        assert len(by_reader[topic]) == len(by_mcap[topic]) == FRAMES
    for i, frame in enumerate(written):
        for source in (by_reader, by_mcap):
            stamp, state = source["/nsm/joint_states"][i]
            assert stamp == stamps[i] and list(state.name) == contract.joint_names
            assert np.array_equal(np.asarray(state.position), frame.qpos)
            assert np.array_equal(np.asarray(state.velocity), frame.qvel)
            assert np.array_equal(np.asarray(source["/nsm/joint_commands"][i][1].position), frame.action)
            image = source["/nsm/camera/wrist/image_raw"][i][1]
            assert (image.height, image.width, image.encoding) == (24, 32, "rgb8")
            assert bytes(image.data) == frame.images["wrist"].tobytes()
            assert image.header.stamp.sec * 10**9 + image.header.stamp.nanosec == stamps[i]
