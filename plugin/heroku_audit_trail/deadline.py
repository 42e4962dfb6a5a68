"""The run's wall-clock budget (--max-runtime): one object, read by the HTTP client (no request
starts past it, none waits longer than what is left) and by the stop guard (its alarm)."""

from __future__ import annotations

import time
from collections.abc import Callable

from heroku_audit_trail.errors import DeadlineError


class Deadline:
    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds  # None: no deadline
        self._clock = clock
        self._end = None if seconds is None else clock() + seconds

    @property
    def message(self) -> str:
        if self.seconds is None:
            return "the run reached its deadline"  # not raised: no deadline is never reached
        return (
            f"the run reached --max-runtime ({self.seconds:g} s); days already printed are "
            "saved and the next run carries on"
        )

    def remaining(self) -> float:
        return float("inf") if self._end is None else self._end - self._clock()

    def check(self) -> None:
        if self.remaining() <= 0:
            raise DeadlineError(self.message)
