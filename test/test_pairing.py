"""recorder_node's frames from out-of-order topics (nsm.recording.pairing), without ROS: each
command with the state of its own tick and each camera's newest frame taken by then."""
import numpy as np

from nsm.recording.pairing import TickPairer

P = 1 / 30


def tick(k: int) -> float:
    return 100.0 + k * P


def q(k: int) -> np.ndarray:
    return np.full(6, float(k))


def image(k: int) -> np.ndarray:
    return np.full((2, 2, 3), k, np.uint8)


def test_in_order_streams_give_one_frame_per_command_at_once():
    p = TickPairer(["wrist"], t0=tick(0))
    for k in range(3):
        p.state(tick(k), q(k), -q(k))
        p.image("wrist", tick(k), image(k))
        p.command(tick(k), q(k) + 0.5, now=0.0)
        (frame,) = p.frames(now=0.0)
        assert np.array_equal(frame.qpos, q(k)) and np.array_equal(frame.qvel, -q(k))
        assert np.array_equal(frame.action, q(k) + 0.5) and frame.images["wrist"][0, 0, 0] == k
        assert abs(frame.timestamp - k * P) < 1e-9


def test_a_command_gets_its_own_ticks_state_whatever_arrives_first():
    p = TickPairer(["wrist"], t0=tick(0))
    p.state(tick(0), q(0), q(0))
    p.image("wrist", tick(1), image(1))
    p.command(tick(1), q(1), now=0.0)  # its state is late
    assert p.frames(now=0.01) == []  # waits for it instead of taking tick 0's
    p.state(tick(1), q(1), q(1))
    (frame,) = p.frames(now=0.02)
    assert np.array_equal(frame.qpos, q(1))
    p.state(tick(2), q(2), q(2))
    p.state(tick(3), q(3), q(3))  # the next ticks' states before tick 2's command
    p.image("wrist", tick(3), image(3))
    p.command(tick(2), q(2), now=0.03)
    (frame,) = p.frames(now=0.03)
    assert np.array_equal(frame.qpos, q(2))


def test_each_camera_gives_its_newest_frame_taken_by_the_tick():
    p = TickPairer(["front", "wrist"], t0=tick(0))
    p.state(tick(5), q(5), q(5))
    p.image("front", tick(4) + 0.01, image(4))  # a camera's capture between ticks
    p.image("wrist", tick(5), image(5))
    p.command(tick(5), q(5), now=0.0)
    assert p.frames(now=0.01) == []  # front's frame of tick 5 could still be on its way
    p.image("front", tick(5) + 0.02, image(6))  # taken after the tick: front has shown all it had
    (frame,) = p.frames(now=0.02)
    assert frame.images["front"][0, 0, 0] == 4 and frame.images["wrist"][0, 0, 0] == 5


def test_after_the_wait_it_takes_the_nearest_and_commands_keep_their_order():
    p = TickPairer(["wrist"], t0=tick(0), wait=0.2)
    p.state(tick(0), q(0), q(0))
    p.image("wrist", tick(0), image(0))
    p.command(tick(1), q(1), now=0.0)  # tick 1's state and image never come (dropped)
    p.command(tick(2), q(2), now=0.01)
    assert p.frames(now=0.1) == []
    p.state(tick(2), q(2), q(2))
    p.image("wrist", tick(2), image(2))
    assert p.frames(now=0.15) == []  # tick 2 is complete, but tick 1 goes first
    first, second = p.frames(now=0.25)
    assert np.array_equal(first.qpos, q(0)) and first.images["wrist"][0, 0, 0] == 0  # nearest before tick 1
    assert np.array_equal(second.qpos, q(2)) and second.images["wrist"][0, 0, 0] == 2


def test_stop_flushes_what_waits_and_counts_what_cannot_be_paired():
    p = TickPairer(["wrist"], t0=tick(0))
    p.command(tick(0), q(0), now=0.0)  # nothing else ever came
    p.state(tick(1), q(1), q(1))
    p.command(tick(1), q(1), now=0.0)  # no image
    assert p.frames(now=0.0, force=True) == [] and p.unpaired == 2
    p.image("wrist", tick(2), image(2))
    p.state(tick(2), q(2), q(2))
    p.command(tick(3), q(3), now=0.0)
    (frame,) = p.frames(now=0.0, force=True)
    assert np.array_equal(frame.qpos, q(2)) and frame.images["wrist"][0, 0, 0] == 2


def test_a_lost_frame_is_counted_as_a_repeat_of_the_tick_before():
    p = TickPairer(["front", "wrist"], t0=tick(0), wait=0.2)
    for k in range(4):
        p.state(tick(k), q(k), q(k))
        p.image("wrist", tick(k), image(k))
        if k != 2:  # front's frame of tick 2 is lost on the way (best effort)
            p.image("front", tick(k), image(k))
        p.command(tick(k), q(k), now=0.1 * k)
    frames = p.frames(now=1.0)
    assert [f.images["front"][0, 0, 0] for f in frames] == [0, 1, 1, 3]
    assert [f.images["wrist"][0, 0, 0] for f in frames] == [0, 1, 2, 3]
    assert p.repeated == {"front": 1, "wrist": 0}
