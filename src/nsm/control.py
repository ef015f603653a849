"""THE control loop: one tick at the robot's rate, on its own real-time thread.

A tick reads the arm, asks the action source (the async chunk runtime in `nsm demo`, the
chunks handed in over `action_chunk` in arm_driver_node) for this step's action, passes it
through the safety filter, switches torque when the watchdog says so, sends it, reads the
arm's battery once a second, and hands the result (`Tick`) to the sinks: recorders and
telemetry in `nsm demo`, the ROS publishers in the node. `nsm demo` and arm_driver_node both
run this class, so the loop a benchmark measures is the loop a robot runs.

Nothing in a tick waits on inference, rendering, disk, the database or an executor: each of
those runs on its own thread or process and only hands data in or out. The thread runs with
the mitigations measured to hold a 30 Hz tick on a busy 2-core machine (bench/control_loop.py):
the GIL is handed over within 0.5 ms, SCHED_FIFO where the OS allows it, and a frozen heap
(shorter garbage-collection pauses).
"""
import contextlib
import gc
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nsm.arm.base import Arm, BatteryReading, JointReading
from nsm.arm.safety import SafetyFilter
from nsm.camera.base import Camera
from nsm.contract import Observation, RobotContract
from nsm.policy.action_queue import ActionQueue
from nsm.scheduling import scheduling_kept

BATTERY_EVERY_S = 1.0
SWITCH_INTERVAL_S = 0.0005  # Python's default 5 ms lets a busy thread hold the GIL past a tick's start
RT_PRIORITY = 10  # SCHED_FIFO priority of the loop thread, where the OS allows it
PERIOD_HISTORY = 100_000  # periods kept for statistics (~55 min at 30 Hz)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tick:
    """What one control tick produced; the sinks get it on the loop thread, after the send."""

    step: int  # control step (slot since the loop started; a skipped slot is counted in `missed`)
    stamp: float  # the loop's `clock()` at the tick's start (ROS time in the node)
    t: float  # seconds since the loop started (monotonic)
    period: float  # seconds since the previous tick started (the target period for the first tick)
    started: float  # time.monotonic() at the tick's start
    reading: JointReading
    command: np.ndarray  # what was sent, after the safety filter
    images: dict[str, np.ndarray]  # newest frame of each camera the loop reads
    battery: BatteryReading | None  # once every BATTERY_EVERY_S, else None


class ActionSource(Protocol):
    def act(self, obs: Observation) -> np.ndarray | None:
        """The action for `obs.step`, or None (hold). Must never block."""


class ChunkInbox:
    """Action chunks handed in from another thread (the node's executor), merged by control step."""

    def __init__(self, merge: str = "replace", coeff: float | None = None):
        self._queue = ActionQueue(merge, coeff)
        self._lock = threading.Lock()

    def put(self, chunk: np.ndarray, first_step: int, now: int) -> None:
        with self._lock:
            self._queue.merge(chunk, first_step, now=now)

    def act(self, obs: Observation) -> np.ndarray | None:
        with self._lock:
            return self._queue.pop(obs.step)

    def remaining(self, step: int) -> int:
        with self._lock:
            return self._queue.remaining(step)


@contextlib.contextmanager
def realtime_thread():
    """While the loop runs: other threads hand over the GIL within 0.5 ms, and this thread
    preempts ordinary work (renderers, encoders, executors) when it wakes, if it may (root or
    rtprio in limits.conf; otherwise only the GIL part applies). Restored afterwards, the
    thread's own policy and priority included (it may have been real-time already).

    Threads and processes the loop thread starts (a runtime's lazily built thread pool, a
    renderer, a writer process) start at normal priority (SCHED_RESET_ON_FORK): inherited, a
    real-time policy would let any of them that spins take a core from everything else."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        with scheduling_kept():
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(RT_PRIORITY))
            except PermissionError:
                log.info("no real-time priority for the control loop (needs rtprio); the GIL interval still applies")
            yield
    finally:
        sys.setswitchinterval(interval)


class ControlLoop:
    """Runs ticks at `contract.fps` on a thread of its own until `steps` ticks ran or `stop()`.

    `source` gives the actions, `cameras` the images of each observation, `sinks` get every
    `Tick`; `clock` stamps the ticks (time.monotonic in `nsm demo`, the node's ROS clock in
    arm_driver_node). A tick that starts more than a whole period late skips the slots it
    missed (counted in `missed`), so step numbers stay aligned with time, as the chunks'
    stamps are. An exception in a tick stops the loop; `join()` raises it.
    """

    def __init__(self, contract: RobotContract, arm: Arm, source: ActionSource, safety: SafetyFilter,
                 cameras: Iterable[Camera] = (), sinks: Iterable[Callable[[Tick], None]] = (),
                 clock: Callable[[], float] = time.monotonic):
        self.contract, self.arm, self.source, self.safety = contract, arm, source, safety
        self.cameras, self.sinks, self.clock = list(cameras), list(sinks), clock
        self.periods: deque[float] = deque(maxlen=PERIOD_HISTORY)
        self.step = 0
        self.ticks = 0
        self.missed = 0
        self.stamp0: float | None = None  # `clock()` at step 0: maps a stamp to its step
        self.error: BaseException | None = None
        self._t0 = 0.0
        self._previous: float | None = None  # start of the previous tick
        self._battery_every = max(1, int(round(BATTERY_EVERY_S * contract.fps)))
        self._enable: bool | None = None
        self._stop = threading.Event()
        self._clock_started = threading.Event()
        self._thread: threading.Thread | None = None

    def newest_periods(self, n: int) -> list[float]:
        """The newest `n` periods, newest first; safe while the loop runs on its thread.

        Iterating `periods` from another thread raises once the loop appends mid-way
        ("deque mutated during iteration"), and copying the whole history would hold the GIL
        the loop needs. One index at a time is atomic and stays valid (the deque only grows or
        drops its oldest end); a tick that lands mid-read shifts the rest by one, which a
        diagnostic's "worst recent period" does not mind.
        """
        periods = self.periods
        return [periods[-i] for i in range(1, min(n, len(periods)) + 1)]

    def start(self, steps: int | None = None, thread: bool = True) -> "ControlLoop":
        """Run `steps` ticks (None: until stop()) on the loop's own real-time thread.
        `thread=False` only starts the clock: the owner calls `tick_now()` (arm_driver_node's
        `loop:=timer`, the rclpy-timer loop bench/control_loop.py compares against)."""
        if thread:
            self._thread = threading.Thread(target=self._main, args=(steps,), name="control-loop", daemon=True)
            self._thread.start()
            self._clock_started.wait()
        else:
            self._start_clock()
        return self

    def _start_clock(self) -> None:
        """Step 0 is now: on the loop thread itself, so the first tick is on time like the rest."""
        self._t0 = time.monotonic()
        self.stamp0 = self.clock()
        self._clock_started.set()

    def stop(self) -> None:
        """End the loop after the tick in progress (the arm keeps its last command)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def join(self) -> "ControlLoop":
        """Wait for the loop to end; raise what stopped it, if a tick failed."""
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        return self

    def enable(self, on: bool) -> None:
        """Enable (resume from the present position) or disable (hold), at the next tick: the
        safety filter is only ever touched by the loop thread."""
        self._enable = on

    def step_at(self, stamp: float) -> int:
        """The control step whose tick had (or will have) this `clock()` stamp."""
        if self.stamp0 is None:
            raise RuntimeError("the control loop has not started")
        return int(round((stamp - self.stamp0) / self.contract.period))

    def _main(self, steps: int | None) -> None:
        gc.freeze()  # everything built during setup is never scanned again: shorter GC pauses in the loop
        try:
            with realtime_thread():
                self._start_clock()
                self._run(steps)
        except BaseException as exc:  # surfaced by join(); the owner decides what the robot does
            self.error = exc
            log.exception("control loop stopped")
        finally:
            self._clock_started.set()

    def _run(self, steps: int | None) -> None:
        period = self.contract.period
        while not self._stop.is_set() and (steps is None or self.ticks < steps):
            delay = self._t0 + self.step * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._tick()
            late_slots = int((time.monotonic() - self._t0) / period) - self.step - 1
            self.missed += max(0, late_slots)
            self.step += 1 + max(0, late_slots)

    def tick_now(self) -> None:
        """One tick at the step the clock says (for an owner that schedules ticks itself)."""
        step = int(round((time.monotonic() - self._t0) / self.contract.period))
        if self.ticks:
            self.missed += max(0, step - self.step - 1)
        self.step = step
        self._tick()

    def _tick(self) -> None:
        started = time.monotonic()
        stamp = self.clock()
        period = self.contract.period
        if self._previous is not None:
            self.periods.append(started - self._previous)
        measured = period if self._previous is None else started - self._previous
        self._previous = started
        reading = self.arm.read()
        if self._enable is not None:
            on, self._enable = self._enable, None
            self.safety.enable(on, reading.position)
        images = {cam.name: cam.latest().image for cam in self.cameras}
        action = self.source.act(Observation(self.step, reading.stamp, reading.position, images))
        command = self.safety.filter(action, started)
        if self.safety.torque_on != self.arm.torque_on:
            self.arm.set_torque(self.safety.torque_on)
        self.arm.send(command)
        battery = self.arm.read_battery() if self.ticks % self._battery_every == 0 else None
        tick = Tick(self.step, stamp, started - self._t0, measured, started, reading, command, images, battery)
        for sink in self.sinks:
            sink(tick)
        self.ticks += 1
