"""The real SO-101 driver path (LeRobot SOFollower -> Feetech SDK -> pyserial) against a
simulated servo chain on a pseudo-terminal."""
import json
import time

import numpy as np
import pytest

from feetech_chain import FeetechChain
from nsm.arm.safety import SafetyFilter
from nsm.arm.so101 import LEROBOT_JOINTS, So101Arm
from nsm.errors import NsmError

RANGES = {name: (1024, 3072) for name in LEROBOT_JOINTS[:-1]} | {"gripper": (2000, 3000)}


@pytest.fixture
def calibration(tmp_path):
    path = tmp_path / "my_follower.json"
    path.write_text(json.dumps({name: {"id": i + 1, "drive_mode": 0, "homing_offset": 0, "range_min": lo,
                                       "range_max": hi} for i, (name, (lo, hi)) in enumerate(RANGES.items())}))
    return path


def ticks(name, value_rad, contract):
    """What the servo should be told for a contract value (LeRobot: degrees about mid-range; 0..100 gripper)."""
    lo, hi = RANGES[name]
    if name == "gripper":
        g = contract.joints[-1]
        return lo + (value_rad - g.lower) / (g.upper - g.lower) * (hi - lo)
    return (lo + hi) / 2 + np.degrees(value_rad) * 4095 / 360


def wait_until(condition, timeout=5.0, proc=None, poll=0.01):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the node exited: {proc.communicate()[0]}"
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(poll)


def servos(chain):
    return [chain.state()[i] for i in range(1, 7)]


def test_reads_and_commands_go_over_the_feetech_protocol(contract, calibration):
    with FeetechChain(position=2048) as chain:
        arm = So101Arm(contract, chain.port, calibration)
        try:
            # connect wrote this arm's calibration and LeRobot's configuration, and left torque on
            limits = [(s.min, s.max) for s in servos(chain)]
            assert limits == [RANGES[n] for n in LEROBOT_JOINTS]
            assert all(s.torque for s in servos(chain))
            reading = arm.read()
            assert reading.position.shape == (6,) and np.all(np.abs(reading.position[:5]) < 0.01)
            target = np.array([0.3, -0.4, 0.5, 0.2, -0.6, 1.0])
            arm.send(target)  # a sync write: no reply, so wait for the chain to have taken it
            expected = [ticks(name, value, contract) for name, value in zip(LEROBOT_JOINTS, target, strict=True)]
            wait_until(lambda: np.allclose([s.goal for s in servos(chain)], expected, atol=1))
            wait_until(lambda: np.allclose(arm.read().position, target, atol=0.003))  # got there (~2 ticks)
            time.sleep(0.05)
            arm.read()
            time.sleep(0.05)
            assert np.all(np.abs(arm.read().velocity) < 0.1)  # and stays: the finite difference is ~0
            arm.set_torque(False)
            assert not any(s.torque for s in servos(chain)) and not arm.torque_on
            arm.set_torque(True)
            assert all(s.torque for s in servos(chain))
        finally:
            arm.close()
        assert not any(s.torque for s in servos(chain))  # disconnect leaves the arm limp, as LeRobot does
        assert chain.packets > 50


def test_the_real_arm_reports_only_what_its_servos_measure(contract, calibration):
    """The supply voltage the servos report; current and percentage unknown (NaN) unless a
    pack curve is configured: never the simulated pack's values."""
    from feetech_chain import SUPPLY_DECIVOLTS

    with FeetechChain() as chain:
        arm = So101Arm(contract, chain.port, calibration)
        try:
            b = arm.read_battery()
        finally:
            arm.close()
        assert b.voltage == pytest.approx(SUPPLY_DECIVOLTS / 10) and not b.simulated
        assert np.isnan(b.current) and np.isnan(b.percentage)
    with FeetechChain() as chain:
        arm = So101Arm(contract, chain.port, calibration, pack_curve=[(11.0, 0.0), (12.6, 1.0)])
        try:
            assert arm.read_battery().percentage == pytest.approx((12.1 - 11.0) / 1.6)
        finally:
            arm.close()


def test_a_late_reply_never_shifts_the_readings_that_follow(contract, calibration):
    """The Feetech SDK never drains its input: a reply that comes after the driver gave up on it
    (and retried) would be taken for the next read's, and every read after it would get the
    previous register's bytes — positions from Present_Load, the voltage from the load."""
    from feetech_chain import SUPPLY_DECIVOLTS

    with FeetechChain(position=2048) as chain:
        arm = So101Arm(contract, chain.port, calibration)
        try:
            before = arm.read().position
            chain.answer_late(0.1)  # past the SDK's ~35 ms window for six servos
            late = arm.read()  # the retry takes the late answer: the same register, so the same values
            assert late.position == pytest.approx(before, abs=1e-3)
            for _ in range(5):
                assert arm.read().position == pytest.approx(before, abs=1e-3)
                assert arm.read_battery().voltage == pytest.approx(SUPPLY_DECIVOLTS / 10)
        finally:
            arm.close()


def test_a_stale_reply_at_connect_is_retried(contract, calibration):
    """LeRobot's connect pings each motor and reads its model number; a reply to an earlier packet
    still in the input is taken for that read's and the SDK fails inside itself (IndexError). The
    driver reconnects — reopening the port empties its input — instead of failing the start."""
    with FeetechChain(position=2048) as chain:
        chain.repeat_next_ping()
        arm = So101Arm(contract, chain.port, calibration)
        try:
            assert np.all(np.abs(arm.read().position[:5]) < 0.01)  # the servos' own positions
        finally:
            arm.close()


def test_a_bad_pack_curve_is_one_clear_error():
    from nsm.arm.so101 import parse_pack_curve

    assert parse_pack_curve("") is None
    assert parse_pack_curve("10.5:0,12.6:1") == [(10.5, 0.0), (12.6, 1.0)]
    with pytest.raises(NsmError, match="volts:charge pairs"):
        parse_pack_curve("12.6")


def test_the_safety_filter_limits_what_reaches_the_servos(contract, calibration):
    with FeetechChain() as chain:
        arm = So101Arm(contract, chain.port, calibration)
        try:
            start = arm.read().position
            safety = SafetyFilter(contract, start)
            arm.send(safety.filter(np.full(6, 10.0), 0.0))  # far outside every limit
            wait_until(lambda: servos(chain)[5].goal != 2048)
            sent = np.array([s.goal for s in servos(chain)])
            allowed = np.array([ticks(n, v, contract) for n, v in zip(LEROBOT_JOINTS, start + contract.max_step, strict=True)])
            assert np.all(sent <= allowed + 1)  # one control step's worth, no more
        finally:
            arm.close()


def test_a_missing_port_names_the_ports_found(contract, calibration):
    with pytest.raises(NsmError, match=r"serial port /dev/ttyNSM0 does not exist \(serial ports found: .*\)"):
        So101Arm(contract, "/dev/ttyNSM0", calibration)


def test_a_missing_calibration_file_names_lerobot_calibrate(contract, tmp_path):
    with FeetechChain() as chain:
        with pytest.raises(NsmError, match="lerobot-calibrate --robot.type=so101_follower"):
            So101Arm(contract, chain.port, tmp_path / "nope.json")
        assert chain.packets == 0  # refused before a single packet


def test_a_missing_motor_is_one_error_and_nothing_moves(contract, calibration):
    with FeetechChain(ids=range(1, 6)) as chain:  # the gripper servo does not answer
        with pytest.raises(NsmError, match="Missing motor IDs"):
            So101Arm(contract, chain.port, calibration)
        state = chain.state().values()
        assert not any(s.goal_writes for s in state) and not any(s.torque for s in state)


@pytest.mark.ros
def test_arm_driver_node_runs_the_real_driver_at_the_control_rate(ros_env, tmp_path, calibration):
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import BatteryState

    from helpers import Observer, start, stop

    with FeetechChain() as chain:
        proc = start("arm_driver_node", "backend:=so101", f"port:={chain.port}", f"calibration:={calibration}",
                     env=ros_env, cwd=tmp_path)
        observer = Observer("/nsmtest")
        battery = observer.watch(BatteryState, "battery")
        cube = observer.watch(PoseStamped, "sim/cube_pose")
        try:
            assert observer.state("arm_driver_node") == "unconfigured" and chain.packets == 0  # nothing opened yet
            assert observer.transition("arm_driver_node", "configure")  # opens the port: torque on, as LeRobot leaves it
            assert observer.transition("arm_driver_node", "activate")  # the loop starts
            # polled gently: each state() question competes with the chain's serial replies for its CPU time
            wait_until(lambda: len(battery) >= 2 and servos(chain)[0].goal_writes >= 10, timeout=60, proc=proc, poll=0.2)
            before, t0 = servos(chain)[0].goal_writes, time.monotonic()
            time.sleep(2.0)
            rate = (servos(chain)[0].goal_writes - before) / (time.monotonic() - t0)
            assert 20 < rate < 40  # one Goal_Position write per 30 Hz tick (holding: nothing queued)
            assert all(s.torque for s in servos(chain))
            held = [s.goal for s in servos(chain)]
            assert held == pytest.approx([2048] * 5 + [held[-1]], abs=2)  # it holds where the arm is
            # a real arm never publishes a simulated value: the measured voltage (or NaN for a reply
            # that came back garbled, as one can on a loaded host), the rest unknown
            volts = [m.voltage for m in battery]
            assert any(v == pytest.approx(12.1, abs=1e-6) for v in volts), volts
            assert all(np.isnan(v) or v == pytest.approx(12.1, abs=1e-6) for v in volts), volts
            assert all(np.isnan(m.percentage) and np.isnan(m.current) for m in battery)
            assert all(m.power_supply_status == BatteryState.POWER_SUPPLY_STATUS_UNKNOWN for m in battery)
            assert not cube and not observer.node.get_publishers_info_by_topic("/nsmtest/sim/cube_pose")
        finally:
            observer.close()
            code, out = stop(proc)
        assert code == 0, out
        assert not any(s.torque for s in servos(chain))  # shut down: LeRobot's disconnect turns torque off


@pytest.mark.ros
def test_arm_driver_node_without_calibration_fails_to_configure_with_one_error(ros_env, tmp_path):
    from helpers import Observer, start, stop

    with FeetechChain() as chain:
        proc = start("arm_driver_node", "backend:=so101", f"port:={chain.port}",
                     f"calibration:={tmp_path / 'missing.json'}", env=ros_env, cwd=tmp_path)
        observer = Observer("/nsmtest")
        try:
            assert not observer.transition("arm_driver_node", "configure")
            assert observer.state("arm_driver_node") == "unconfigured"  # the lifecycle's answer to a failed configure
        finally:
            observer.close()
            code, out = stop(proc)
        assert code == 0, out
        errors = [line for line in out.splitlines() if "ERROR" in line]
        assert len(errors) == 1 and "configure failed" in errors[0] and "lerobot-calibrate" in errors[0], out
        assert chain.packets == 0  # refused before a single packet
        assert chain.packets == 0
