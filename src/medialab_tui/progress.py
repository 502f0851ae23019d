"""Time left for a running job, from the step rate it is showing now.

A job's wall time since it started includes loading its model, which can be most of
it: extrapolating from that makes the estimate start far too high and then fall
(25 min, then 10 min eight seconds later). The rate is measured instead between the
first step seen and the latest one, so the model load is not in it; until two steps
have been seen there is no estimate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class _Seen:
    step: int
    at: float


class StepRates:
    """Remembers, per job, when its first step was seen; gives seconds left."""

    def __init__(self) -> None:
        self._first: dict[int, _Seen] = {}

    def seconds_left(
        self, job_id: int, step: int, total: int, now: float | None = None
    ) -> float | None:
        """Seconds until `total` at the rate between the first step seen and `step`;
        None while the rate is not known yet (fewer than two distinct steps seen)."""
        now = time.monotonic() if now is None else now
        if total <= 0 or step <= 0:
            return None
        first = self._first.get(job_id)
        if first is None or step < first.step:  # new, or restarted from step 0
            self._first[job_id] = _Seen(step, now)
            return None
        if step == first.step or now <= first.at:
            return None
        rate = (step - first.step) / (now - first.at)
        return max(0.0, (total - step) / rate)

    def forget_except(self, job_ids: set[int]) -> None:
        """Drop the jobs no longer running."""
        for job_id in list(self._first):
            if job_id not in job_ids:
                del self._first[job_id]
