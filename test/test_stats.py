import pytest

from nsm.stats import RateMeter, wilson_interval


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


def test_rate_meter_reports_the_recent_rate_and_zero_after_a_stream_stops():
    meter = RateMeter(window=2.0)
    assert meter.rate(0.0) == 0.0 and meter.age(0.0) is None
    for i in range(91):  # 30 Hz for 3 s
        meter.tick(i / 30)
    assert meter.rate(3.0) == pytest.approx(30.0, rel=0.02)
    assert meter.count == 91 and meter.age(3.5) == pytest.approx(0.5)
    for i in range(1, 11):  # then 5 Hz for 2 s
        meter.tick(3.0 + i / 5)
    assert meter.rate(5.0) == pytest.approx(5.0, rel=0.25)  # the window still holds the tail of 30 Hz
    assert meter.rate(5.0 + 2.5) == 0.0  # stopped
