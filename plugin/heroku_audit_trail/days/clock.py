"""Two clocks, this host's and Heroku's (the `Date` of its answers): days are closed by the
earlier date of the two, so a host clock that runs ahead cannot close a day before it has
ended everywhere, and a cursor a wrong clock moved too far is brought back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from heroku_audit_trail.days.window import horizon, lookback_grew, rewound
from heroku_audit_trail.ecs import format_time

SKEW_WARNING = timedelta(minutes=5)  # the Date header has whole seconds; networks lag


@dataclass(frozen=True)
class Rewind:
    """A cursor to move back, and the warning that says why."""

    closed_through: date
    warning: str


class Clocks:
    def __init__(
        self, now: Callable[[], datetime], heroku_now: Callable[[], datetime | None]
    ) -> None:
        self.now = now  # this host's
        self.heroku_now = heroku_now  # the last Date seen; None before any answer
        self._compared = False

    @property
    def known(self) -> bool:
        """Whether an answer has told Heroku's date."""
        return self.heroku_now() is not None

    def trusted_today(self, today: date) -> date:
        """The earlier of `today` (ours) and Heroku's date."""
        server = self.heroku_now()
        return min(today, server.date()) if server is not None else today

    def heroku_today(self, today: date) -> date:
        """Heroku's date once known, else ours."""
        server = self.heroku_now()
        return server.date() if server is not None else today

    def confirmed(self, day: date) -> date | None:
        """`day`, if Heroku's Date has confirmed this run's clock; else None."""
        return day if self.known else None

    def skew_warning(self) -> tuple[str, int] | None:
        """Once a run, after an answer: a host clock far from Heroku's decides when days close,
        which an operator should hear of. The message and the skew in seconds."""
        server = self.heroku_now()
        if self._compared or server is None:
            return None
        self._compared = True
        skew = self.now() - server
        if abs(skew) < SKEW_WARNING:
            return None
        minutes = abs(skew).total_seconds() / 60
        side = "ahead of" if skew > timedelta() else "behind"
        return (
            f"this host's clock is {minutes:.0f} min {side} Heroku's (its Date header said "
            f"{format_time(server)}): days are closed by the earlier of the two dates; set "
            "this host's clock right (NTP)",
            round(skew.total_seconds()),
        )

    def rewind(
        self, closed_through: date, closed_on: date | None, today: date, lookback: int
    ) -> Rewind | None:
        """A cursor ahead of today less the lookback (a clock that ran ahead with no Date to
        correct it, an edited state, a larger --lookback-days) goes back, within the bound of
        `rewound`: a few duplicates, never a silent feed. Today is Heroku's, once known."""
        latest = self.heroku_today(today)
        back = rewound(closed_through, latest, lookback, closed_on)
        if back == closed_through:
            return None
        why = (
            "--lookback-days is larger than when those days were closed"
            if lookback_grew(closed_through, closed_on, latest)
            else "this host's clock was ahead before (or is behind now), the state was edited, "
            "or --lookback-days grew"
        )
        bounded = back > horizon(latest, lookback)
        return Rewind(
            back,
            f"the state's closed_through {closed_through} is ahead of today ({latest} UTC) less "
            f"the lookback: {why}; reading again from {back + timedelta(days=1)}"
            + (" (a cursor is moved back no further than that in a run)" if bounded else "")
            + " (events printed before may be printed twice; event.id tells them apart)",
        )


def confirmed_days(days: list[date], closed_on: date | None) -> list[date]:
    """The days up to `closed_on`, the date Heroku's Date last confirmed to have come."""
    return [day for day in days if closed_on is not None and day <= closed_on]
