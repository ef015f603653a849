"""MCAP bags of an episode, read back by two independent readers (rosbags and mcap)."""
import time

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader

from nsm.errors import NsmError
from nsm.recording.background import ChunkRecord, EpisodeFrame
from nsm.recording.mcap_writer import McapEpisodeWriter

FRAMES = 12


def frames(contract):
    rng = np.random.default_rng(3)
    return [EpisodeFrame(rng.normal(size=6), rng.normal(size=6), rng.normal(size=6),
                         {"wrist": rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)}, t / 30) for t in range(FRAMES)]


def test_bag_round_trips_through_rosbags_and_mcap(contract, tmp_path):
    start = time.time_ns()
    written = frames(contract)
    writer = McapEpisodeWriter(tmp_path / "episode_0", contract, ["wrist"], start_ns=start, policy="test",
                               image_format="raw")
    chunks = [ChunkRecord(np.random.default_rng(k).normal(size=(5, 6)), k * 0.2, k * 0.2 + 0.031) for k in range(2)]
    for i, frame in enumerate(written):
        writer.add_frame(frame)
        if i % 6 == 0:
            writer.add_chunk(chunks[i // 6])
    bag = writer.close(success=True)
    assert bag == tmp_path / "episode_0" and (bag / "metadata.yaml").is_file()
    assert yaml.safe_load((bag / "episode.yaml").read_text())["frames"] == FRAMES
    assert yaml.safe_load((bag / "robot_contract.yaml").read_text())["robot"] == "so101"
    stamps = [start + int(round(f.timestamp * 1e9)) for f in written]

    by_reader = {}
    with AnyReader([bag]) as reader:
        for connection, stamp, raw in reader.messages():
            by_reader.setdefault(connection.topic, []).append((stamp, reader.deserialize(raw, connection.msgtype)))
    assert set(by_reader) == {"/nsm/joint_states", "/nsm/joint_commands", "/nsm/camera/wrist/image_raw",
                              "/nsm/action_chunk", "/nsm/robot_description", "/tf_static", "/tf"}

    with open(next(bag.glob("*.mcap")), "rb") as f:
        by_mcap = {}
        for _, channel, message, decoded in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            by_mcap.setdefault(channel.topic, []).append((message.log_time, decoded))

    once = {"/nsm/robot_description": 1, "/tf_static": 1, "/nsm/action_chunk": 2}
    for topic in by_reader:
        assert len(by_reader[topic]) == len(by_mcap[topic]) == once.get(topic, FRAMES)
    # the arm's model for RViz and Foxglove: the URDF and the fixed links, latched as robot_state_publisher offers
    # them (`ros2 bag play` offers them again), then every frame's moving links at its joint_states stamp
    assert by_reader["/nsm/robot_description"][0][1].data.startswith("<?xml")
    assert [t.child_frame_id for t in by_mcap["/tf_static"][0][1].transforms] == ["gripper_frame_link"]
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["topics_with_message_count"]
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"] for t in meta}
    assert all((p[0]["durability"], p[0]["reliability"], p[0]["depth"]) == ("transient_local", "reliable", 1)
               for p in (qos["/nsm/robot_description"], qos["/tf_static"]))
    for (stamp, tf), state in zip(by_reader["/tf"], by_reader["/nsm/joint_states"], strict=True):
        assert stamp == state[0] and len(tf.transforms) == 6
        assert tf.transforms[0].header.frame_id == "base_link" and tf.transforms[0].child_frame_id == "shoulder_link"
    for chunk, *read in zip(chunks, by_reader["/nsm/action_chunk"], by_mcap["/nsm/action_chunk"], strict=True):
        for logged, msg in read:  # logged when it arrived, stamped with its observation, as policy_node does
            assert logged == start + int(round(chunk.arrived * 1e9)) and list(msg.joint_names) == contract.joint_names
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == start + int(round(chunk.observed * 1e9))
            assert np.array_equal([p.positions for p in msg.points], chunk.actions)
            offsets = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
            assert np.allclose(offsets, np.arange(5) / contract.fps)
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



def smooth_frames(count):
    """Camera-like images (gradients), which JPEG keeps close; noise would not survive it."""
    y, x = np.mgrid[0:240, 0:320]  # the contract's size: the bag converts to an episode
    return [EpisodeFrame(np.full(6, 0.1 * t), np.zeros(6), np.full(6, 0.1 * t + 0.05),
                         {"wrist": np.stack([(x + t) % 256, y, (x + y) // 2], axis=-1).astype(np.uint8)}, t / 30)
            for t in range(count)]


def test_jpeg_images_in_zstd_chunks_read_back_with_both_readers_and_convert(contract, tmp_path):
    import h5py

    from nsm.recording.bag_convert import bag_to_hdf5

    written = smooth_frames(FRAMES)
    writer = McapEpisodeWriter(tmp_path / "episode_0", contract, ["wrist"], start_ns=time.time_ns(), policy="test",
                               image_format="jpeg", compression="zstd")
    for frame in written:
        writer.add_frame(frame)
    bag = writer.close(success=True)
    topic = "/nsm/camera/wrist/image_raw/compressed"
    with open(next(bag.glob("*.mcap")), "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert {c.compression for c in reader.get_summary().chunk_indexes} == {"zstd"}
        decoded = [m for _, ch, _, m in reader.iter_decoded_messages() if ch.topic == topic]
    with AnyReader([bag]) as reader:
        connection = next(c for c in reader.connections if c.topic == topic)
        assert connection.msgtype == "sensor_msgs/msg/CompressedImage"
        by_rosbags = [reader.deserialize(raw, connection.msgtype) for _, _, raw in reader.messages([connection])]
    assert len(decoded) == len(by_rosbags) == FRAMES
    for a, b in zip(decoded, by_rosbags, strict=True):
        assert a.format == b.format == "rgb8; jpeg compressed bgr8" and bytes(a.data) == bytes(b.data)
        assert bytes(a.data[:2]) == b"\xff\xd8"  # a JPEG
    episode = bag_to_hdf5(bag, tmp_path / "episode_0.hdf5")
    with h5py.File(episode.path) as f:
        images = f["observations/images/wrist"][:]
    assert episode.frames == FRAMES
    for image, frame in zip(images, written, strict=True):
        assert np.abs(image.astype(int) - frame.images["wrist"]).mean() < 3  # JPEG at quality 90, colours in order


def test_unknown_formats_are_refused(contract, tmp_path):
    with pytest.raises(NsmError, match="unknown image format 'png'"):
        McapEpisodeWriter(tmp_path / "a", contract, ["wrist"], start_ns=0, image_format="png")
    with pytest.raises(NsmError, match="unknown bag compression 'lz4'"):
        McapEpisodeWriter(tmp_path / "b", contract, ["wrist"], start_ns=0, compression="lz4")

def test_bag_with_streams_at_their_own_rates_converts_at_the_control_rate(contract, tmp_path):
    """joint_states and commands at 30 Hz with jitter, the camera at 15 Hz, then a 0.3 s
    camera stall: the episode is resampled at 30 Hz and the stalled ticks are left out."""
    import h5py
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from nsm.recording.bag_convert import bag_to_hdf5

    ts = get_typestore(Stores.ROS2_JAZZY)
    t = ts.types
    bag = tmp_path / "bag"
    start = 1_700_000_000 * 10**9
    rng = np.random.default_rng(0)

    def header(ns):
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                                        frame_id="")

    def joints(ns, value):
        return t["sensor_msgs/msg/JointState"](header=header(ns), name=contract.joint_names,
                                               position=np.full(6, float(value)), velocity=np.zeros(6), effort=np.zeros(0))

    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        states = writer.add_connection("/nsm/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        commands = writer.add_connection("/nsm/joint_commands", "sensor_msgs/msg/JointState", typestore=ts)
        camera = writer.add_connection("/nsm/camera/wrist/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        for k in range(60):  # 2 s
            ns = start + k * 33_333_333 + int(rng.integers(-3, 4)) * 10**6  # +-3 ms jitter
            writer.write(states, ns, ts.serialize_cdr(joints(ns, k), "sensor_msgs/msg/JointState"))
            writer.write(commands, ns, ts.serialize_cdr(joints(ns, k + 0.5), "sensor_msgs/msg/JointState"))
            if k % 2 == 0 and not 30 <= k < 40:  # 15 Hz, and nothing from 1.0 s to 1.33 s
                image = np.full((240, 320, 3), k, np.uint8)
                msg = t["sensor_msgs/msg/Image"](header=header(ns + 5 * 10**6), height=240, width=320, encoding="rgb8",
                                                 is_bigendian=0, step=960, data=image.reshape(-1))
                writer.write(camera, ns + 5 * 10**6, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    (bag / "robot_contract.yaml").write_text(contract.to_yaml())

    result = bag_to_hdf5(bag, tmp_path / "episode_0.hdf5", max_skew=0.05)
    assert 0 < result.skipped_ticks <= 10 and result.frames + result.skipped_ticks in (59, 60)
    with h5py.File(result.path) as f:
        qpos, action, images = f["observations/qpos"][:], f["action"][:], f["observations/images/wrist"][:]
        stamps = f["timestamp"][:]
    assert np.allclose(np.diff(stamps)[np.diff(stamps) < 0.04], 1 / 30)  # the 30 Hz clock (gap where skipped)
    assert np.array_equal(action[:, 0], qpos[:, 0] + 0.5)  # state and command of the same tick stay together
    tick_of_frame = np.round(stamps * 30).astype(int)
    assert np.all(np.abs(images[:, 0, 0, 0].astype(int) - tick_of_frame) <= 1)  # the nearest camera frame
    with pytest.raises(NsmError, match="no robot_contract.yaml"):
        (bag / "robot_contract.yaml").unlink()
        bag_to_hdf5(bag, tmp_path / "episode_1.hdf5")
