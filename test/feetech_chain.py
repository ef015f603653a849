"""A simulated chain of Feetech STS3215 servos behind a pseudo-terminal.

The real driver code path (nsm So101Arm -> LeRobot SOFollower -> FeetechMotorsBus ->
scservo_sdk -> pyserial) talks to the pty's slave end exactly as it would to the USB
adapter; the chain answers on the master end: ping, read, write, sync read and sync write
packets (Feetech protocol 0), each servo with its own control table. With torque on,
a servo moves toward its goal at the STS3215's no-load speed.

The chain runs in a process of its own, like real servos: a garbage-collection pause of
the test process must not make it miss the SDK's 50 ms reply window. Tests read the servos'
registers through `state()`.
"""
import multiprocessing
import os
import threading
import time
import tty
from dataclasses import dataclass

ADDR = {"model": 3, "id": 5, "min": 9, "max": 11, "homing": 31, "torque": 40, "goal": 42, "present": 56, "load": 60,
        "voltage": 62}
SUPPLY_DECIVOLTS = 121  # what each servo reports as Present_Voltage: 12.1 V
STS3215_MODEL = 777
TICKS_PER_S = 3000  # ~0.22 s per 60 degrees, the STS3215's no-load speed at 7.4 V
PING, READ, WRITE, SYNC_READ, SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
BROADCAST = 0xFE


def _checksum(body: bytes) -> int:
    return (~sum(body)) & 0xFF


class Servo:
    def __init__(self, servo_id: int, position: int = 2048):
        self.table = bytearray(256)
        self.table[0], self.table[1] = 3, 10  # firmware 3.10
        self._put(ADDR["model"], STS3215_MODEL)
        self.table[ADDR["id"]] = servo_id
        self._put(ADDR["max"], 4095)
        self.table[ADDR["voltage"]] = SUPPLY_DECIVOLTS
        self.actual = float(position)  # encoder ticks, before the homing offset
        self._put(ADDR["goal"], position)
        self._moved_at = time.monotonic()
        self.writes: list[tuple[int, bytes]] = []

    def _put(self, addr: int, value: int) -> None:
        self.table[addr : addr + 2] = int(value).to_bytes(2, "little")

    def _get(self, addr: int) -> int:
        return int.from_bytes(self.table[addr : addr + 2], "little")

    @property
    def homing(self) -> int:
        """Homing_Offset is sign-magnitude with the sign in bit 11."""
        raw = self._get(ADDR["homing"])
        return -(raw & 0x7FF) if raw & 0x800 else raw

    def _advance(self) -> None:
        now = time.monotonic()
        if self.table[ADDR["torque"]]:
            lo, hi = self._get(ADDR["min"]), self._get(ADDR["max"])
            target = min(max(self._get(ADDR["goal"]), lo), hi) + self.homing  # the servo clamps to its limits
            step = TICKS_PER_S * (now - self._moved_at)
            self.actual += max(-step, min(step, target - self.actual))
        self._moved_at = now

    def read(self, addr: int, length: int) -> bytes:
        self._advance()
        self._put(ADDR["present"], int(round(self.actual - self.homing)) % 4096)
        return bytes(self.table[addr : addr + length])

    def write(self, addr: int, data: bytes) -> None:
        self._advance()
        self.writes.append((addr, bytes(data)))
        self.table[addr : addr + len(data)] = data

    @property
    def torque(self) -> bool:
        return bool(self.table[ADDR["torque"]])

    @property
    def goal(self) -> int:
        return self._get(ADDR["goal"])


@dataclass(frozen=True)
class ServoState:
    goal: int
    torque: bool
    min: int
    max: int
    goal_writes: int  # Goal_Position writes received


class FeetechChain:
    """Servos `ids` on a pty, served by a child process; `port` is the path to give the driver."""

    def __init__(self, ids=range(1, 7), position: int = 2048):
        self._args = (list(ids), position)
        self._process = None
        self._conn = None
        self.port = ""

    def __enter__(self) -> "FeetechChain":
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_run_chain, args=(*self._args, child), daemon=True)
        self._process.start()
        self.port = self._conn.recv()
        return self

    def __exit__(self, *exc) -> None:
        self._conn.send("stop")
        self._process.join(timeout=10)

    def state(self) -> dict[int, ServoState]:
        self._conn.send("state")
        return self._conn.recv()

    @property
    def packets(self) -> int:
        self._conn.send("packets")
        return self._conn.recv()

    def answer_late(self, seconds: float) -> None:
        """The next sync read is answered `seconds` late: past the SDK's reply window, as a busy
        USB adapter or a slow servo can (the driver times out and retries meanwhile)."""
        self._conn.send(("late", seconds))
        self._conn.recv()

    def repeat_next_ping(self) -> None:
        """The next ping is answered twice, as when an earlier attempt's answer arrives late: the
        SDK takes the second copy for the reply to the model-number read that follows the ping."""
        self._conn.send(("repeat_ping",))
        self._conn.recv()


def _run_chain(ids: list[int], position: int, conn) -> None:
    # real servos answer within microseconds: on a loaded 2-core machine (a training run beside
    # the tests) a chain that waits for a core misses the SDK's reply window. The serving thread
    # blocks on the pty between packets, so a real-time priority costs the machine nothing.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))  # inherited by the serving thread
    except OSError:  # not permitted here
        try:
            os.nice(-5)
        except PermissionError:
            pass
    server = ChainServer(ids, position)
    conn.send(server.port)
    while (request := conn.recv()) != "stop":
        if request == "state":
            conn.send({i: ServoState(s.goal, s.torque, s._get(ADDR["min"]), s._get(ADDR["max"]),
                                     sum(addr == ADDR["goal"] for addr, _ in s.writes))
                       for i, s in server.servos.items()})
        elif request == "packets":
            conn.send(server.packets)
        elif request[0] == "late":
            server.late = request[1]
            conn.send(True)
        elif request[0] == "repeat_ping":
            server.repeat_ping = True
            conn.send(True)
    server.close()


class ChainServer:
    """The servos and the thread that answers their packets on the pty's master end."""

    def __init__(self, ids, position: int):
        self.servos = {i: Servo(i, position) for i in ids}
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave  # kept open so the pty survives between the driver's open/close
        self._stop = threading.Event()
        self.packets = 0
        self.late = 0.0  # seconds to wait before answering the next sync read
        self.repeat_ping = False  # answer the next ping twice
        self._thread = threading.Thread(target=self._serve, daemon=True, name="feetech-chain")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        os.close(self._slave)
        self._thread.join(timeout=5)
        os.close(self._master)

    def _reply(self, servo_id: int, data: bytes = b"") -> None:
        body = bytes([servo_id, len(data) + 2, 0]) + data
        os.write(self._master, b"\xff\xff" + body + bytes([_checksum(body)]))

    def _serve(self) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # the slave side closed: we are shutting down
                return
            buffer += chunk
            while True:
                start = buffer.find(b"\xff\xff")
                if start < 0 or len(buffer) < start + 4:
                    break
                del buffer[:start]
                end = 4 + buffer[3]
                if len(buffer) < end:
                    break
                packet, buffer = bytes(buffer[:end]), buffer[end:]
                if _checksum(packet[2:-1]) == packet[-1]:
                    self.packets += 1
                    self._handle(packet[2], packet[4], packet[5:-1])

    def _handle(self, servo_id: int, instruction: int, params: bytes) -> None:
        servo = self.servos.get(servo_id)
        if instruction == PING and servo:
            self._reply(servo_id)
            if self.repeat_ping:
                self.repeat_ping = False
                self._reply(servo_id)
        elif instruction == READ and servo:
            self._reply(servo_id, servo.read(params[0], params[1]))
        elif instruction == WRITE and servo:
            servo.write(params[0], params[1:])
            self._reply(servo_id)
        elif instruction == SYNC_READ and servo_id == BROADCAST:
            addr, length = params[0], params[1]
            if self.late:
                time.sleep(self.late)
                self.late = 0.0
            for sid in params[2:]:
                if sid in self.servos:
                    self._reply(sid, self.servos[sid].read(addr, length))
        elif instruction == SYNC_WRITE and servo_id == BROADCAST:
            addr, length = params[0], params[1]
            for k in range(2, len(params), length + 1):
                sid = params[k]
                if sid in self.servos:
                    self.servos[sid].write(addr, params[k + 1 : k + 1 + length])
