"""The async runtime never makes the control loop wait for inference."""
import threading
import time

import numpy as np

from nsm.contract import Observation
from nsm.policy.runtime import AsyncChunkRuntime


class SlowPolicy:
    name = "slow"
    chunk_size = 10

    def __init__(self, delay, value=1.0):
        self.delay, self.value = delay, value
        self.calls = 0
        self.release = threading.Event()

    def reset(self):
        self.calls = 0

    def predict_chunk(self, obs):
        self.calls += 1
        self.release.wait(self.delay)
        return np.full((self.chunk_size, 2), self.value + obs.step)


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def obs(step):
    return Observation(step, time.monotonic(), np.zeros(2))


def test_act_returns_while_inference_is_stuck_and_holds_until_a_chunk_arrives():
    policy = SlowPolicy(delay=30.0)
    rt = AsyncChunkRuntime(policy, n_joints=2, threshold=0.5).start()
    try:
        started = time.monotonic()
        results = [rt.act(obs(s)) for s in range(20)]
        assert time.monotonic() - started < 1.0  # 20 ticks while inference is blocked for 30 s
        assert results == [None] * 20 and rt.empty_ticks == 20
        wait_for(lambda: policy.calls == 1)
        rt.act(obs(20))
        assert policy.calls == 1  # one request in flight, not one per tick
        policy.release.set()
        wait_for(lambda: rt.chunks == 1)
        # computed for steps 0..9 but arrived at step 19: stale rows are dropped, never replayed
        assert rt.queue.remaining(0) == 0
        assert rt.act(obs(20)) is None  # asks again with the newest observation
        wait_for(lambda: rt.chunks == 2)
        assert rt.act(obs(21))[0] == 1.0 + 20  # row 1 of the chunk made for step 20
    finally:
        policy.release.set()
        rt.stop()


def test_nan_chunks_never_reach_the_queue():
    class NanPolicy(SlowPolicy):
        def predict_chunk(self, obs):
            return np.full((self.chunk_size, 2), np.nan)

    rt = AsyncChunkRuntime(NanPolicy(0), n_joints=2).start()
    try:
        rt.act(obs(0))
        wait_for(lambda: rt.bad_chunks >= 1)
        assert rt.bad_chunks >= 1 and rt.act(obs(1)) is None
    finally:
        rt.stop()


class DelayedExpert:
    """The scripted expert behind a backend that takes 3x the control period per chunk."""

    def __init__(self, contract, delay):
        from nsm.sim.expert import WaypointExpert

        self.expert = WaypointExpert(contract, chunk_size=30)
        self.name, self.chunk_size, self.delay = "delayed", 30, delay
        self.reset = self.expert.reset

    def predict_chunk(self, obs):
        time.sleep(self.delay)
        return self.expert.predict_chunk(obs)


def test_a_slow_backend_never_starves_a_30hz_loop(contract):
    period = contract.period
    policy = DelayedExpert(contract, delay=3 * period)
    rt = AsyncChunkRuntime(policy, len(contract.joints), threshold=0.5).start()
    actions, steps_without_action = [], []
    try:
        t0 = time.monotonic()
        for step in range(150):  # 5 s at 30 Hz
            time.sleep(max(0.0, t0 + step * period - time.monotonic()))
            action = rt.act(Observation(step, time.monotonic(), np.zeros(len(contract.joints))))
            if action is None:
                steps_without_action.append(step)
            else:
                actions.append(action)
    finally:
        rt.stop()
    # only the first chunk's latency (3 periods, +1 for scheduling) is spent without actions
    assert steps_without_action == list(range(len(steps_without_action))) and len(steps_without_action) <= 5
    # steady state: the queue never ran dry, and consecutive actions never jump
    largest_step = max(np.abs(policy.expert.pose_at((k + 1) * period) - policy.expert.pose_at(k * period)).max()
                       for k in range(300))
    jumps = np.abs(np.diff(np.array(actions), axis=0)).max()
    assert jumps <= largest_step + 1e-9
    assert rt.chunks >= 150 // 30 and rt.bad_chunks == 0 and np.median(rt.latencies) >= 3 * period


def test_stale_observations_are_refused():
    policy = SlowPolicy(delay=0)
    rt = AsyncChunkRuntime(policy, n_joints=2, max_obs_age=0.05).start()
    try:
        assert rt.act(Observation(0, time.monotonic() - 1.0, np.zeros(2))) is None
        time.sleep(0.05)
        assert rt.stale_observations == 1 and policy.calls == 0
    finally:
        rt.stop()
