import numpy as np
import pytest

from nsm.policy.action_queue import ActionQueue


def chunk(values):
    return np.array(values, dtype=float)[:, None]


def test_replace_mode_newest_chunk_wins_on_overlap():
    q = ActionQueue("replace")
    q.merge(chunk([0, 1, 2, 3]), first_step=0)
    q.merge(chunk([10, 11, 12, 13]), first_step=2)
    assert [q.pop(s)[0] for s in range(6)] == [0, 1, 10, 11, 12, 13]
    assert q.pop(6) is None


def test_temporal_ensembling_uses_act_weights():
    m = 0.5
    q = ActionQueue("ensemble", m)
    q.merge(chunk([1.0, 1.0]), first_step=0)
    q.merge(chunk([3.0]), first_step=1)
    assert q.pop(0)[0] == 1.0
    w0, w1 = 1.0, np.exp(-m * 1)  # oldest prediction weighs most
    assert q.pop(1)[0] == pytest.approx((w0 * 1.0 + w1 * 3.0) / (w0 + w1))


def test_late_rows_are_dropped_and_old_steps_forgotten():
    q = ActionQueue()
    q.merge(chunk([0, 1, 2, 3, 4]), first_step=0, now=3)
    assert q.remaining(0) == 2
    assert q.pop(3)[0] == 3
    assert q.pop(10) is None and q.remaining(0) == 0


def test_blend_weighs_the_new_chunk_by_coeff():
    q = ActionQueue("blend", 0.7)
    q.merge(chunk([0.0, 10.0]), first_step=0)
    q.merge(chunk([20.0]), first_step=1)
    assert q.pop(0)[0] == 0.0 and q.pop(1)[0] == pytest.approx(0.7 * 20 + 0.3 * 10)


def test_unknown_merge_mode_is_refused():
    with pytest.raises(ValueError, match="unknown merge mode 'avg'; use one of replace, ensemble, blend"):
        ActionQueue("avg")
