"""Property: whatever command stream arrives, every command sent respects the contract; and
the watchdog cuts torque when commands stop, until the arm is enabled again."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nsm.arm.safety import SafetyFilter

values = st.floats(allow_nan=True, allow_infinity=True, width=64)
commands = st.one_of(st.none(), st.lists(values, min_size=5, max_size=7).map(np.array))
PERIOD = 1 / 30


@settings(max_examples=200, deadline=None)
@given(st.lists(commands, max_size=60), st.lists(st.booleans(), max_size=60))
def test_no_limit_is_ever_violated(contract, stream, toggles):
    safety = SafetyFilter(contract, np.asarray(contract.home))
    previous = safety.last.copy()
    for k, command in enumerate(stream):
        if k < len(toggles) and toggles[k] and k % 7 == 0:  # enable/disable at arbitrary moments
            safety.enable(not safety.enabled, previous)
        sent = safety.filter(command, now=k * PERIOD)
        assert sent.shape == (len(contract.joints),) and np.all(np.isfinite(sent))
        assert np.all(sent >= contract.lower) and np.all(sent <= contract.upper)
        assert np.all(np.abs(sent - previous) <= contract.max_step + 1e-12)
        if not safety.enabled or not safety.torque_on:
            assert np.array_equal(sent, previous)  # disabled or tripped: the arm never moves
        previous = sent.copy()


def test_invalid_commands_hold_the_last_safe_one(contract):
    safety = SafetyFilter(contract, np.asarray(contract.home))
    held = safety.filter(np.full(6, np.nan), now=0.0)
    assert np.array_equal(held, np.asarray(contract.home)) and safety.rejected == 1
    safety.filter(np.zeros(5), now=0.0)
    assert safety.rejected == 2


def test_watchdog_holds_then_cuts_torque_until_enabled(contract):
    safety = SafetyFilter(contract, np.asarray(contract.home), torque_off_after=0.5)
    for k in range(60):  # no command yet (a policy still loading): hold, never trip
        safety.filter(None, now=-3.0 + k * PERIOD)
    assert safety.torque_on
    target = np.asarray(contract.home) + 0.05
    assert np.allclose(safety.filter(target, now=0.0), target)
    for k in range(1, 15):  # 0.47 s without a command: holding, torque still on
        assert np.allclose(safety.filter(None, now=k * PERIOD), target) and safety.torque_on
    for k in range(15, 20):
        safety.filter(None, now=k * PERIOD)
    assert not safety.torque_on and safety.watchdog_trips == 1
    assert np.allclose(safety.filter(target + 0.05, now=1.0), target)  # fresh commands do not re-arm it
    assert not safety.torque_on
    safety.enable(True, target)
    assert safety.torque_on and np.allclose(safety.filter(target + 0.05, now=1.1), target + 0.05)


def test_torque_off_makes_the_sim_arm_go_limp(contract):
    from nsm.arm.sim import SimArm
    from nsm.sim.scene import SimScene

    arm = SimArm(SimScene(contract))
    raised = np.asarray(contract.home)
    for _ in range(30):
        arm.send(raised)
    held = arm.read().position.copy()
    arm.set_torque(False)
    for _ in range(30):  # 1 s without motor torque: gravity wins
        arm.send(raised)
    limp = arm.read().position
    assert np.abs(limp - held).max() > 0.05
    arm.set_torque(True)
    for _ in range(60):
        arm.send(raised)
    assert np.abs(arm.read().position - held).max() < 0.05  # torque back: it returns to the target
