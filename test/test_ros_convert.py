"""numpy <-> ROS 2 messages with the real Jazzy message classes, and Humble compatibility:
every message nsm publishes, serialized by rclpy, is read back by the `rosbags` Humble
typestore with the same field values."""
import numpy as np
import pytest

from nsm.errors import NsmError

pytestmark = pytest.mark.ros
convert = pytest.importorskip("nsm.ros.convert", reason="ROS 2 message packages are test dependencies")
NAMES = ["a", "b", "c"]


def test_image_round_trip_rgb_and_bgr():
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    msg = convert.image_to_msg(image, 12.25, "front_camera")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (24, 32, 96, "rgb8")
    assert convert.from_time(msg.header.stamp) == 12.25 and msg.header.frame_id == "front_camera"
    np.testing.assert_array_equal(convert.msg_to_image(msg), image)
    msg.encoding, msg.data = "bgr8", image[..., ::-1].tobytes()
    np.testing.assert_array_equal(convert.msg_to_image(msg), image)


@pytest.mark.parametrize("change, error", [({"encoding": "mono16"}, "encoding 'mono16' is not supported"),
                                           ({"height": 23}, "does not match 32x23 rgb8")])
def test_images_with_another_encoding_or_size_are_refused(change, error):
    msg = convert.image_to_msg(np.zeros((24, 32, 3), np.uint8), 0.0, "x")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(NsmError, match=error):
        convert.msg_to_image(msg)


def test_compressed_image_round_trip_within_jpeg_error():
    y, x = np.mgrid[0:48, 0:64]
    image = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it close
    msg = convert.image_to_compressed_msg(image, 3.5, "wrist_camera")
    assert msg.format == "rgb8; jpeg compressed bgr8" and len(msg.data) < image.nbytes
    back = convert.compressed_msg_to_image(msg)
    assert back.shape == image.shape
    assert np.abs(back.astype(int) - image).mean() < 3
    msg.data = b"not a jpeg"
    with pytest.raises(NsmError, match="does not decode"):
        convert.compressed_msg_to_image(msg)


def test_camera_info_projects_the_field_of_view_edge_to_the_image_edge():
    info = convert.camera_info_msg(320, 240, 1.0, "front_camera", fovy_deg=50.0)
    k = np.array(info.k).reshape(3, 3)
    edge = k @ np.array([0.0, np.tan(np.radians(25.0)), 1.0])  # a ray on the top/bottom boundary of the view
    assert edge[1] / edge[2] == pytest.approx(239.5, abs=1e-6)  # the outer edge of the last pixel row
    assert k[0, 0] == k[1, 1] and (k[0, 2], k[1, 2]) == (159.5, 119.5)
    assert list(convert.camera_info_msg(320, 240, 1.0, "usb", None).k) == [0.0] * 9  # uncalibrated


def test_joint_state_and_chunk_round_trip_and_wrong_joints_refused():
    msg = convert.joint_state_to_msg(NAMES, 5.0, [0.1, 0.2, 0.3], [1, 2, 3])
    np.testing.assert_allclose(convert.msg_to_positions(msg, NAMES), [0.1, 0.2, 0.3])
    with pytest.raises(NsmError, match="expected"):
        convert.msg_to_positions(msg, ["a", "c", "b"])  # never reordered silently
    msg.position = [0.1, 0.2]
    with pytest.raises(NsmError, match="2 positions"):
        convert.msg_to_positions(msg, NAMES)
    chunk = np.arange(12, dtype=float).reshape(4, 3)
    stamp, offsets, positions = convert.msg_to_chunk(convert.chunk_to_msg(NAMES, chunk, 100.5, 1 / 30), NAMES)
    assert stamp == 100.5
    np.testing.assert_allclose(offsets, np.arange(4) / 30, atol=1e-9)
    np.testing.assert_array_equal(positions, chunk)


def test_battery_and_diagnostics_carry_their_values():
    sim = convert.battery_to_msg(12.1, 0.8, 0.75, 2.0, simulated=True)
    assert convert.battery_from_msg(sim) == pytest.approx((12.1, 0.8, 0.75))
    assert sim.power_supply_status == sim.POWER_SUPPLY_STATUS_DISCHARGING
    real = convert.battery_to_msg(12.1, float("nan"), float("nan"), 2.0, simulated=False)
    voltage, current, percentage = convert.battery_from_msg(real)
    assert voltage == pytest.approx(12.1) and np.isnan(current) and np.isnan(percentage)  # unknown stays unknown
    assert real.power_supply_status == real.POWER_SUPPLY_STATUS_UNKNOWN
    diag = convert.diagnostics_msg("/nsm/arm_driver_node", {"loop_hz": 30.0, "queued": 3}, 2.0, level=1, message="m")
    status = diag.status[0]
    assert status.level == b"\x01" and status.name == "/nsm/arm_driver_node"
    assert {kv.key: kv.value for kv in status.values} == {"loop_hz": "30.0", "queued": "3"}


def messages():
    image = np.full((4, 6, 3), 7, np.uint8)
    return {
        "sensor_msgs/msg/Image": convert.image_to_msg(image, 1.5, "f"),
        "sensor_msgs/msg/CompressedImage": convert.image_to_compressed_msg(image, 1.5, "f"),
        "sensor_msgs/msg/CameraInfo": convert.camera_info_msg(6, 4, 1.5, "f", 60.0),
        "sensor_msgs/msg/JointState": convert.joint_state_to_msg(NAMES, 1.5, [1, 2, 3], [4, 5, 6], [7, 8, 9]),
        "trajectory_msgs/msg/JointTrajectory": convert.chunk_to_msg(NAMES, np.ones((2, 3)), 1.5, 0.5),
        "sensor_msgs/msg/BatteryState": convert.battery_to_msg(12.0, 1.0, 0.5, 1.5, simulated=True),
        "geometry_msgs/msg/PoseStamped": convert.pose_to_msg(np.array([0.2, 0.1, 0.02, 1.0, 0.0, 0.0, 0.0]), 1.5),
        "diagnostic_msgs/msg/DiagnosticArray": convert.diagnostics_msg("n", {"k": 1}, 1.5),
    }


def as_plain(value):
    """rclpy message or rosbags dataclass -> nested dicts/lists of plain values."""
    if hasattr(value, "get_fields_and_field_types"):
        return {name: as_plain(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if hasattr(value, "__dataclass_fields__"):
        return {name: as_plain(getattr(value, name)) for name in value.__dataclass_fields__
                if name != "__msgtype__" and not name.isupper()}  # constants are class fields there
    if isinstance(value, (bytes, bytearray)) and len(value) == 1:  # rclpy's byte / octet field
        return value[0]
    if isinstance(value, (list, tuple, np.ndarray, bytes, bytearray, memoryview)) or type(value).__name__ == "array":
        return [as_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else list(value))]
    return value


@pytest.mark.parametrize("msgtype", list(messages()))
def test_humble_reads_what_nsm_publishes(msgtype):
    from rclpy.serialization import serialize_message
    from rosbags.typesys import Stores, get_typestore

    msg = messages()[msgtype]
    humble = get_typestore(Stores.ROS2_HUMBLE)
    fields = [name for name, _ in humble.get_msgdef(msgtype).fields]
    assert fields == list(msg.get_fields_and_field_types()), f"{msgtype}: Humble and Jazzy fields differ"
    raw = serialize_message(msg)
    # rclpy's buffer can run past the message (measured: 28 bytes after a JointTrajectory), which
    # rosbags' deserialize_cdr refuses as a size mismatch; decode with the Humble definition directly.
    assert raw[:4] == b"\x00\x01\x00\x00"  # CDR, little endian
    decoded, end = humble.get_msgdef(msgtype).deserialize_cdr_le(raw[4:], 0, humble.get_msgdef(msgtype).cls, humble)
    assert end <= len(raw) - 4
    assert_same(as_plain(decoded), as_plain(msg), msgtype)


def assert_same(got, expected, where):
    """Equal, floats to float32 precision (BatteryState's fields are float32 on the wire)."""
    if isinstance(expected, dict):
        assert list(got) == list(expected), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same(g, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-6, nan_ok=True), where
    else:
        assert got == expected, where
