import pytest

from nsm.stats import wilson_interval


def test_wilson_interval_matches_published_values():
    # 50/50: the rule-of-three-like upper end, 92.9% .. 100%
    assert wilson_interval(50, 50) == pytest.approx((0.9287, 1.0), abs=1e-3)
    # 45/50 = 90%: 78.6% .. 95.7% (Wilson score, z = 1.96)
    assert wilson_interval(45, 50) == pytest.approx((0.7864, 0.9565), abs=1e-3)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-3)


def test_wilson_interval_refuses_no_trials():
    with pytest.raises(ValueError):
        wilson_interval(0, 0)
