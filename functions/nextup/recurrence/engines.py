"""Counting a series' occurrences period by period without walking them.

Every engine answers two questions about the series' in-phase periods after its first
one (the first period, cut short by the start, is counted by `expand.first_period_count`):

* ``count(lo, hi)``: occurrences in the periods ``lo <= p < hi`` (for COUNT);
* ``next_nonempty(p, limit)``: the first period at or after ``p`` with an occurrence
  (so that generating never walks through long stretches of empty periods, and so that
  a rule which never occurs is caught).

Which engine a pattern gets depends on its shape (`cyclic` holds the engines for patterns
that repeat weekly, `calendar_plans` those for calendar patterns):

* `EveryPeriod`: WEEKLY without BYMONTH; every in-phase week has the same count.
* `WeekCycle`: DAILY picking days by weekday only, and HOURLY/MINUTELY likewise whose
  INTERVAL does not divide a day. Whether a period has occurrences then depends only on
  its position in the week, so counting is arithmetic: the in-phase periods form an
  arithmetic progression and `daymath.count_in_runs` counts its terms landing in the
  allowed positions with `floor_sum`, in O(runs x log) whatever the span.
* `FixedTimes`: HOURLY/MINUTELY whose INTERVAL divides a day: every day offers the same
  in-phase times, so counting reduces to counting allowed days (`WeekdayDays` by
  arithmetic, `CalendarDays` from per-year day lists).
* `CalendarDays` itself for DAILY picking days by calendar (BYMONTH, BYMONTHDAY).
* `YearPlans`: MONTHLY, YEARLY and WEEKLY with BYMONTH. A year's periods depend only on
  the year's length, the weekday of 1 January (and the previous year's length for
  BYWEEKNO) and the interval phase at the year's start, so each year's list of non-empty
  periods is memoised by that signature; the Gregorian calendar repeats every 400 years,
  so only a few dozen signatures ever occur for a pattern.
"""

from __future__ import annotations

from typing import Protocol

from nextup.recurrence.calendar_plans import CalendarDays, YearPlans
from nextup.recurrence.cyclic import EveryPeriod, FixedTimes, WeekCycle, WeekdayDays
from nextup.recurrence.daymath import runs_of
from nextup.recurrence.expand import remember
from nextup.recurrence.model import Freq
from nextup.recurrence.pattern import Pattern
from nextup.recurrence.timeline import UNITS_PER_DAY


class Engine(Protocol):
    def count(self, lo: int, hi: int) -> int: ...
    def next_nonempty(self, p: int, limit: int) -> int | None: ...


def engine_for(pattern: Pattern, p0: int) -> Engine:
    """The counting engine suited to the pattern's shape (see the module docstring)."""
    freq, interval = pattern.freq, pattern.interval
    if freq is Freq.WEEKLY and pattern.months is None:
        return EveryPeriod(p0, interval, pattern.kept(len(pattern.weekdays) * len(pattern.times)))
    if freq in (Freq.YEARLY, Freq.MONTHLY, Freq.WEEKLY):
        return YearPlans(pattern, p0)
    per_unit = pattern.kept(len(pattern.times))
    if freq is Freq.DAILY and pattern.calendar_days:
        return CalendarDays(pattern, p0, interval, per_unit)
    units_per_day = UNITS_PER_DAY[freq]
    if freq is not Freq.DAILY and units_per_day % interval == 0:
        days = (
            CalendarDays(pattern, 0, 1, 1)
            if pattern.calendar_days
            else WeekdayDays(pattern.weekdays)
        )
        times = remember(pattern, ("times", p0 % interval), lambda: _in_phase_times(pattern, p0))
        return FixedTimes(units_per_day, times, per_unit, days)
    runs = remember(pattern, ("runs",), lambda: _week_runs(pattern, units_per_day))
    return WeekCycle(pattern, p0, per_unit, units_per_day, runs)


def _times_of_day(pattern: Pattern) -> list[int]:
    """Units of the day a period may start at: DAILY: midnight; HOURLY: the allowed
    hours; MINUTELY: the allowed minutes of the day (ascending)."""
    if pattern.freq is Freq.DAILY:
        return [0]
    hours = pattern.hours if pattern.hours is not None else range(24)
    if pattern.freq is Freq.HOURLY:
        return sorted(hours)
    minutes = pattern.minutes if pattern.minutes is not None else range(60)
    return [60 * h + m for h in sorted(hours) for m in sorted(minutes)]


def _in_phase_times(pattern: Pattern, p0: int) -> list[int]:
    # The interval divides the day: a time of day is in phase on every day or none.
    step = pattern.interval
    if pattern.freq is Freq.MINUTELY and pattern.hours is None and pattern.minutes is None:
        return list(range(p0 % step, 1440, step))
    return [t for t in _times_of_day(pattern) if (t - p0) % step == 0]


def _day_runs(pattern: Pattern, units_per_day: int) -> list[tuple[int, int]]:
    """Allowed units of the day as half-open runs, built hour by hour."""
    if pattern.freq is Freq.DAILY:
        return [(0, 1)]
    hours = sorted(pattern.hours) if pattern.hours is not None else range(24)
    if pattern.freq is Freq.HOURLY:
        return list(runs_of(hours, 24))
    minutes = runs_of(pattern.minutes if pattern.minutes is not None else range(60), 60)
    return _merged((60 * h + low, 60 * h + high) for h in hours for low, high in minutes)


def _merged(runs) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for low, high in runs:
        if out and out[-1][1] == low:
            out[-1] = (out[-1][0], high)
        else:
            out.append((low, high))
    return out


def _week_runs(pattern: Pattern, units_per_day: int) -> tuple[tuple[int, int], ...]:
    """Allowed positions in the week (units from Monday 00:00) as half-open runs."""
    day_runs = _day_runs(pattern, units_per_day)
    weekdays = sorted(pattern.weekdays) if pattern.weekdays is not None else range(7)
    return tuple(
        _merged(
            (day * units_per_day + low, day * units_per_day + high)
            for day in weekdays
            for low, high in day_runs
        )
    )
