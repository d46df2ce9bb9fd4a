"""The UTC calendar day and month that token budgets are counted in.

Budgets follow the calendar (not a sliding 24 h) because that is how operators and invoices
think of "per day" and "per month". The period is read from the local clock: an instance whose
clock is off by a few ms near midnight may book a request on the neighbouring day, which moves
the request between days but never lets a day exceed its budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Period:
    day: str  # "20261124"
    month: str  # "202611"
    day_ends_at: float  # unix seconds
    month_ends_at: float

    def ends_at(self, monthly: bool) -> float:
        return self.month_ends_at if monthly else self.day_ends_at

    def seconds_left(self, monthly: bool) -> float:
        return self.ends_at(monthly) - time.time()


def period_at(now: float) -> Period:
    moment = datetime.fromtimestamp(now, UTC)
    day_start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if moment.month == 12:
        next_month = day_start.replace(year=moment.year + 1, month=1, day=1)
    else:
        next_month = day_start.replace(month=moment.month + 1, day=1)
    return Period(
        day=moment.strftime("%Y%m%d"),
        month=moment.strftime("%Y%m"),
        day_ends_at=day_start.timestamp() + 86400,
        month_ends_at=next_month.timestamp(),
    )


class Calendar:
    """The current period, recomputed only when the day changes."""

    def __init__(self) -> None:
        self._period = period_at(time.time())

    def current(self) -> Period:
        if time.time() >= self._period.day_ends_at:
            self._period = period_at(time.time())
        return self._period
