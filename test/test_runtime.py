"""The async runtime never makes the control loop wait for inference."""
import threading
import time

import numpy as np

from nsm.policy.base import Observation
from nsm.policy.runtime import AsyncChunkRuntime


class SlowPolicy:
    name = "slow"
    chunk_size = 10

    def __init__(self, delay, value=1.0):
        self.delay, self.value = delay, value
        self.calls = 0
        self.release = threading.Event()

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
