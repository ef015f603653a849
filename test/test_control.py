"""The one control loop (nsm.control): the tick's order, chunks handed in from another
thread, enable/disable, slots skipped when a tick overruns, and the end of the loop."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from nsm.arm.base import BatteryReading, JointReading
from nsm.arm.safety import SafetyFilter
from nsm.arm.sim import SimArm
from nsm.control import RT_PRIORITY, ChunkInbox, ControlLoop, realtime_thread
from nsm.sim.scene import SimScene


class FakeArm:
    """Records what it is sent; `stall` makes one send take that long (a slow bus)."""

    def __init__(self, n=6):
        self.position = np.zeros(n)
        self.sent: list[np.ndarray] = []
        self.torque_on = True
        self.stall_at, self.stall = None, 0.0
        self.batteries = 0

    def read(self):
        return JointReading(self.position.copy(), np.zeros_like(self.position), np.zeros_like(self.position),
                            time.monotonic())

    def send(self, target):
        if len(self.sent) == self.stall_at:
            time.sleep(self.stall)
        self.sent.append(np.array(target))
        self.position = np.array(target)

    def set_torque(self, on):
        self.torque_on = on

    def read_battery(self):
        self.batteries += 1
        return BatteryReading(12.0, float("nan"), float("nan"), simulated=False)

    def close(self):
        pass


def make_loop(contract, arm, source, sinks=()):
    return ControlLoop(contract, arm, source, SafetyFilter(contract, arm.read().position), sinks=sinks)


def test_chunks_handed_in_from_another_thread_reach_the_arm_at_their_steps(contract):
    arm, inbox, ticks = FakeArm(), ChunkInbox(), []
    loop = make_loop(contract, arm, inbox, [ticks.append])
    loop.start(steps=30)
    time.sleep(0.1)  # a few ticks hold (nothing queued yet)
    now = loop.step
    chunk = np.tile(np.linspace(0.0, 0.05, 20)[:, None], (1, 6))
    threading.Thread(target=inbox.put, args=(chunk, now + 2, now)).start()
    loop.join()
    assert loop.ticks == 30 and [t.step for t in ticks] == list(range(30))
    commands = np.array([t.command for t in ticks])
    assert np.all(commands[: now + 2] == 0)  # held until the chunk's first step
    assert np.allclose(commands[now + 2 : now + 22, 0], chunk[:, 0])  # then each row at its own step
    assert np.allclose(np.array(arm.sent), commands)  # what the sinks saw is what was sent
    assert arm.batteries == 1 and ticks[0].battery is not None and all(t.battery is None for t in ticks[1:])
    assert np.median(np.diff([t.started for t in ticks])) == pytest.approx(contract.period, abs=0.003)


def test_disable_holds_and_enable_resumes_from_where_the_arm_is(contract):
    arm, inbox = FakeArm(), ChunkInbox()
    loop = make_loop(contract, arm, inbox).start()
    try:
        inbox.put(np.full((300, 6), 0.05), loop.step + 1, loop.step)
        time.sleep(0.2)
        loop.enable(False)
        time.sleep(0.1)
        held = len(arm.sent)
        time.sleep(0.2)
        assert np.allclose(arm.sent[held:], arm.sent[held - 1])  # disabled: the last command, nothing new
        assert not loop.safety.enabled
        loop.enable(True)
        time.sleep(0.1)
        assert loop.safety.enabled
    finally:
        loop.stop()


def test_a_tick_that_overruns_skips_the_slots_it_missed(contract):
    arm, ticks = FakeArm(), []
    arm.stall_at, arm.stall = 5, 3.5 * contract.period  # one send blocks for 3.5 periods
    loop = make_loop(contract, arm, ChunkInbox(), [ticks.append])
    loop.start(steps=15).join()
    steps = [t.step for t in ticks]
    # step 5 ends 3.5 periods late, inside slot 8: slots 6 and 7 are skipped, step numbers stay on time
    assert loop.missed == 2 and steps[:6] == list(range(6)) and steps[6] == 8
    assert max(loop.periods) > 3 * contract.period


def test_a_failing_tick_stops_the_loop_and_join_raises_it(contract):
    def broken(tick):
        if tick.step == 3:
            raise RuntimeError("sink broke")

    loop = make_loop(contract, FakeArm(), ChunkInbox(), [broken]).start()
    with pytest.raises(RuntimeError, match="sink broke"):
        loop.join()
    assert loop.ticks == 3


def test_the_newest_periods_can_be_read_while_the_loop_appends(contract):
    """arm_driver_node's diagnostics read the worst recent period from the ROS executor's thread
    while the loop appends; iterating the deque there raised "deque mutated during iteration"
    and killed the node. A writer thread appending as fast as it can stands in for the loop."""
    loop, done = make_loop(contract, FakeArm(), ChunkInbox()), threading.Event()

    def append():
        i = 0
        while not done.is_set():
            loop.periods.append(float(i))
            i += 1

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows within a fraction of a second
    writer = threading.Thread(target=append)
    writer.start()
    reads = []
    try:
        wait_until = time.monotonic() + 10.0  # a loaded machine may not have run the writer yet
        while not loop.periods and time.monotonic() < wait_until:
            time.sleep(0.001)
        assert loop.periods, "the writer thread appended nothing in 10 s"
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            before = loop.periods[-1]
            recent = loop.newest_periods(300)
            reads.append((before, recent, loop.periods[-1]))
    finally:
        done.set()
        writer.join()
        sys.setswitchinterval(previous)
    full = [(before, r, after) for before, r, after in reads if len(r) == 300]
    assert len(full) > 10, "the writer never filled 300 periods"
    # each value is one of the 300 newest at some moment of the read: none older, none not yet written
    assert all(min(r) > before - 300 and max(r) <= after for before, r, after in full)
    assert loop.newest_periods(5) == [loop.periods[-1 - k] for k in range(5)]


def test_stamps_map_back_to_their_steps(contract):
    loop = make_loop(contract, FakeArm(), ChunkInbox(), [])
    with pytest.raises(RuntimeError, match="not started"):
        loop.step_at(0.0)
    ticks = []
    loop.sinks.append(ticks.append)
    loop.start(steps=10).join()
    assert [loop.step_at(t.stamp) for t in ticks] == [t.step for t in ticks]


def test_the_sim_arm_bills_the_simulated_pack_for_simulated_time(contract):
    arm = SimArm(SimScene(contract))
    for _ in range(30):
        arm.send(np.asarray(contract.home))
    b = arm.read_battery()
    assert b.simulated and 0.99 < b.percentage < 1.0 and b.current > 0
    drained = 1.0 - b.percentage
    expected = b.current / 3600.0 / arm.battery.capacity_ah  # one second at this draw
    assert drained == pytest.approx(expected, rel=0.2)


def test_threads_and_processes_the_loop_thread_starts_run_at_normal_priority():
    """Only the loop thread is real-time: a thread pool or a process it starts lazily (ONNX
    Runtime's workers on the first inference, a renderer) must not inherit SCHED_FIFO, where one
    that spins would hold a core against everything else on a 2-core robot computer."""
    seen = {}

    def loop():
        with realtime_thread():
            seen["loop"] = os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK
            child = threading.Thread(target=lambda: seen.update(thread=os.sched_getscheduler(0)))
            child.start()
            child.join()
            seen["process"] = int(subprocess.check_output(
                [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"], text=True))
        seen["after"] = os.sched_getscheduler(0)

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    assert seen["loop"] == os.SCHED_FIFO or os.geteuid() != 0  # root (CI, the robot's service) may
    assert seen["thread"] == seen["process"] == seen["after"] == os.SCHED_OTHER


@pytest.mark.skipif(os.geteuid() != 0, reason="making a thread real-time first needs root")
def test_a_thread_that_was_real_time_already_gets_its_own_priority_back():
    seen = {}

    def loop():
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(3))
        with realtime_thread():
            seen["loop"] = os.sched_getparam(0).sched_priority
        seen["after"] = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    assert seen == {"loop": RT_PRIORITY, "after": (os.SCHED_FIFO, 3)}
