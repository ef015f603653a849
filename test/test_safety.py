"""Property: whatever command stream arrives, every command sent respects the contract."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nsm.arm.safety import SafetyFilter

values = st.floats(allow_nan=True, allow_infinity=True, width=64)
commands = st.one_of(st.none(), st.lists(values, min_size=5, max_size=7).map(np.array))


@settings(max_examples=200, deadline=None)
@given(st.lists(commands, max_size=60))
def test_no_limit_is_ever_violated(contract, stream):
    safety = SafetyFilter(contract, np.asarray(contract.home))
    previous = safety.last.copy()
    for command in stream:
        sent = safety.filter(command)
        assert sent.shape == (len(contract.joints),) and np.all(np.isfinite(sent))
        assert np.all(sent >= contract.lower) and np.all(sent <= contract.upper)
        assert np.all(np.abs(sent - previous) <= contract.max_step + 1e-12)
        previous = sent.copy()


def test_invalid_commands_hold_the_last_safe_one(contract):
    safety = SafetyFilter(contract, np.asarray(contract.home))
    held = safety.filter(np.full(6, np.nan))
    assert np.array_equal(held, np.asarray(contract.home)) and safety.rejected == 1
    safety.filter(np.zeros(5))
    assert safety.rejected == 2
