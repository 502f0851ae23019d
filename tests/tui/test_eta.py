"""The time left for a running job comes from the step rate it shows now, so a long
model load before the first step does not inflate it (and it does not jump)."""

from __future__ import annotations

from medialab_tui.progress import StepRates


def test_the_estimate_uses_the_step_rate_not_the_time_since_the_job_started() -> None:
    rates = StepRates()
    # 20 s of model load, then one step a second, 200 steps in all.
    assert rates.seconds_left(7, step=1, total=200, now=21.0) is None  # one step: no rate yet
    first = rates.seconds_left(7, step=5, total=200, now=25.0)
    later = rates.seconds_left(7, step=13, total=200, now=33.0)
    assert first == 195.0 and later == 187.0
    # From the job's start it would have said 25 s × 195 / 5 = 975 s, then 475 s.


def test_a_job_that_starts_again_is_measured_afresh() -> None:
    rates = StepRates()
    rates.seconds_left(3, step=10, total=20, now=0.0)
    assert rates.seconds_left(3, step=20, total=20, now=10.0) == 0.0
    assert rates.seconds_left(3, step=2, total=20, now=50.0) is None  # back at step 2
    assert rates.seconds_left(3, step=4, total=20, now=52.0) == 16.0
    rates.forget_except(set())
    assert rates.seconds_left(3, step=5, total=20, now=53.0) is None
