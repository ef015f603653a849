"""The real SO-101 follower arm, through LeRobot's own driver (SOFollower on the Feetech bus).

LeRobot speaks degrees for the five arm joints (0 = the middle of the calibrated range,
the "new calibration" the SO-101 MJCF also uses) and 0..100 for the gripper (its calibrated
range). nsm speaks the robot contract's radians everywhere, so this is the one place the
units change: arm joints deg <-> rad, the gripper 0..100 <-> the contract's gripper range.

Nothing here prompts: the calibration file must exist (LeRobot's `lerobot-calibrate` writes
it), a missing port or file is one error naming the fix, before any motor is addressed.
"""
import glob
import math
import time
from pathlib import Path

import numpy as np

from nsm.arm.base import BatteryReading, JointReading
from nsm.contract import RobotContract
from nsm.errors import NsmError

LEROBOT_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
LOAD_FULL_SCALE = 1000.0  # Present_Load is in 0.1 % of the stall torque
VOLTS_PER_UNIT = 0.1  # Present_Voltage is in 0.1 V
PLAUSIBLE_VOLTS = (4.0, 16.0)  # an answering STS3215 is powered within this; outside it is a misread
CONNECT_ATTEMPTS = 3
CONNECT_SETTLE_S = 0.2  # before a retry: late replies land, then the reopen flushes them
TORQUE_RETRIES = 5


def parse_pack_curve(text: str) -> list[tuple[float, float]] | None:
    """`"10.5:0,11.1:0.1,12.6:1"` (volts:charge pairs) -> points; "" -> None (percentage unknown)."""
    if not text.strip():
        return None
    try:
        return [(float(v), float(c)) for v, c in (pair.split(":") for pair in text.split(","))]
    except ValueError:
        raise NsmError(f"pack_curve '{text}' is not volts:charge pairs, e.g. 10.5:0,11.1:0.1,12.6:1") from None


def serial_ports() -> list[str]:
    return sorted(glob.glob("/dev/ttyACM*") + glob.glob("/dev/ttyUSB*") + glob.glob("/dev/serial/by-id/*"))


class So101Arm:
    """`Arm` for a real SO-101 follower. `calibration` is LeRobot's `<id>.json` for this arm."""

    def __init__(self, contract: RobotContract, port: str, calibration: Path,
                 pack_curve: list[tuple[float, float]] | None = None):
        """`pack_curve`: (volts, charge 0..1) points of the pack that powers the arm, to turn the
        measured voltage into a percentage; without one the percentage is unknown (NaN)."""
        if pack_curve and (len(pack_curve) < 2 or any(len(p) != 2 for p in pack_curve)
                           or list(pack_curve) != sorted(pack_curve)):
            raise NsmError(f"pack_curve {pack_curve} must be two or more (volts, charge) pairs in rising voltage")
        if contract.joint_names != LEROBOT_JOINTS:
            raise NsmError(f"robot {contract.robot} has joints {contract.joint_names}; the so101 backend drives "
                           f"{LEROBOT_JOINTS}")
        if not Path(port).exists():
            found = ", ".join(serial_ports()) or "none"
            raise NsmError(f"serial port {port} does not exist (serial ports found: {found}); "
                           "pass the arm's port, e.g. /dev/ttyACM0 (`lerobot-find-port` tells which)")
        calibration = Path(calibration)
        if not calibration.is_file():
            raise NsmError(f"calibration file {calibration} is missing; calibrate the arm once with "
                           f"`lerobot-calibrate --robot.type=so101_follower --robot.port={port} "
                           f"--robot.id={calibration.stem}` and pass the JSON it writes")
        from lerobot.robots.so_follower import SOFollower, SOFollowerRobotConfig

        self.contract = contract
        self.robot = SOFollower(SOFollowerRobotConfig(port=port, id=calibration.stem,
                                                      calibration_dir=calibration.parent, use_degrees=True))
        self.bus = self.robot.bus
        self._connect(port)
        if not self.bus.is_calibrated:  # the motors hold another calibration: write this arm's file
            self.bus.write_calibration(self.robot.calibration)
        self._gripper_range = (contract.joints[-1].lower, contract.joints[-1].upper)
        self._last: tuple[np.ndarray, float] | None = None
        self._pack_curve = np.array(pack_curve, dtype=float) if pack_curve else None
        self.torque_on = True

    def _connect(self, port: str) -> None:
        """Handshake (every motor answers), PID and limits configured. LeRobot reads the
        calibration registers once each without retrying, and its motor check pings once; one
        lost status packet (a busy host, a noisy bus) would fail the whole start, so the
        connect is retried — a motor that is really silent fails all attempts (~2 s more).
        A late reply to an earlier packet is taken for the next one's (the SDK never drains its
        input) and the SDK fails inside itself with an IndexError; pyserial empties the input
        when it opens the port, so a retry first waits for late replies to land (without the
        pause, a reply still on its way can poison the next attempt as well)."""
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                self.robot.connect(calibrate=False)
                return
            except (ConnectionError, RuntimeError, IndexError) as exc:
                if self.bus.is_connected:
                    self.bus.disconnect(disable_torque=False)
                if attempt == CONNECT_ATTEMPTS:
                    raise NsmError(f"SO-101 on {port}: {exc}") from None
                time.sleep(CONNECT_SETTLE_S * attempt)

    def _to_contract(self, values: dict[str, float]) -> np.ndarray:
        position = np.radians([values[name] for name in LEROBOT_JOINTS[:-1]])
        lo, hi = self._gripper_range
        return np.append(position, lo + values["gripper"] / 100.0 * (hi - lo))

    def _to_lerobot(self, target: np.ndarray) -> dict[str, float]:
        lo, hi = self._gripper_range
        values = dict(zip(LEROBOT_JOINTS[:-1], np.degrees(target[:-1]).tolist(), strict=True))
        values["gripper"] = float(100.0 * (target[-1] - lo) / (hi - lo))
        return values

    def read(self) -> JointReading:
        """Positions (one sync read), velocity from the last reading, effort as a fraction of stall torque."""
        position = self._to_contract(self._sync_read("Present_Position"))
        load = self._sync_read("Present_Load", normalize=False)
        stamp = time.monotonic()
        velocity = np.zeros_like(position)
        if self._last is not None and stamp > self._last[1]:
            velocity = (position - self._last[0]) / (stamp - self._last[1])
        self._last = (position, stamp)
        effort = np.array([load[name] for name in LEROBOT_JOINTS]) / LOAD_FULL_SCALE
        return JointReading(position, velocity, effort, stamp)

    def _sync_read(self, register: str, normalize: bool = True) -> dict[str, float]:
        """One sync read of every servo, retried on a bad status packet as LeRobot does. The
        Feetech SDK never drains its input (its clearPort flushes only output): replies that came
        after it gave up (and retried) would be taken for this read's, and every read after for
        the one before — positions from Present_Load. Whatever waits before a request is stale;
        at worst the one read right after a retry can still get the retry's late answer."""
        self.bus.port_handler.ser.reset_input_buffer()
        return self.bus.sync_read(register, normalize=normalize, num_retry=self.robot.config.num_read_retries)

    def send(self, target: np.ndarray) -> None:
        self.bus.sync_write("Goal_Position", self._to_lerobot(np.asarray(target, dtype=float)))

    def set_torque(self, on: bool) -> None:
        """LeRobot writes the torque register without retries by default; a lost status packet
        must not leave the arm with torque in the wrong state (LeRobot's disconnect retries 5x too)."""
        if on:
            self.bus.enable_torque(num_retry=TORQUE_RETRIES)
        else:
            self.bus.disable_torque(num_retry=TORQUE_RETRIES)
        self.torque_on = on

    def read_battery(self) -> BatteryReading:
        """The supply voltage the servos measure (median over the chain, they share one supply;
        readings no powered servo can give are dropped: a retry's answer that comes after the
        drain in `_sync_read` can still be taken for this read's). The STS3215 does not
        measure current; the percentage comes only from the configured pack curve. Nothing here
        is simulated."""
        raw = self._sync_read("Present_Voltage", normalize=False)
        volts = [v * VOLTS_PER_UNIT for v in raw.values() if PLAUSIBLE_VOLTS[0] <= v * VOLTS_PER_UNIT <= PLAUSIBLE_VOLTS[1]]
        voltage = float(np.median(volts)) if volts else math.nan  # a garbled reply is unknown, not 0 V
        charge = math.nan
        if self._pack_curve is not None and volts:
            charge = float(np.interp(voltage, self._pack_curve[:, 0], self._pack_curve[:, 1]))
        return BatteryReading(voltage, math.nan, charge, simulated=False)

    def close(self) -> None:
        """Disconnect; LeRobot turns the torque off on the way (the arm goes limp)."""
        if self.robot.is_connected:
            self.robot.disconnect()
