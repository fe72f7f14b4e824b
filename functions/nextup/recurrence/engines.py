"""Counting a series' occurrences period by period without walking them.

Every engine answers three questions about the series' in-phase periods after its first
one (the first period, cut short by the start, is counted by `expand.first_period_count`):

* ``count(lo, hi)``: occurrences in the periods ``lo <= p < hi``;
* ``next_nonempty(p, limit)``: the first period at or after ``p`` with an occurrence;
* ``run(p)``: a stretch of periods from a non-empty ``p`` and its occurrence count, which
  bounds how far python-dateutil is let walk (see `search`).

Which engine a pattern gets depends on its shape:

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

from bisect import bisect_left
from itertools import accumulate
from math import gcd
from typing import Protocol

from nextup.recurrence.daymath import (
    MONTH_STARTS,
    count_in_runs,
    is_leap,
    jan1,
    runs_of,
    weekday,
    year_of,
)
from nextup.recurrence.expand import month_count, remember, week_day_count, year_doys
from nextup.recurrence.model import Freq
from nextup.recurrence.pattern import Pattern
from nextup.recurrence.timeline import (
    UNITS_PER_DAY,
    ceil_in_phase,
    first_period_of_year,
    year_of_period,
)

# How many periods one dateutil walk may cover when every period has occurrences.
_RUN_PERIODS = 64
# Periods checked one by one before `WeekCycle` falls back to bisection.
_SCAN = 32


class Engine(Protocol):
    def count(self, lo: int, hi: int) -> int: ...
    def next_nonempty(self, p: int, limit: int) -> int | None: ...
    def run(self, p: int) -> tuple[int, int]: ...


class EveryPeriod:
    """Every in-phase period holds ``per_period`` occurrences."""

    def __init__(self, p0: int, interval: int, per_period: int) -> None:
        self.p0, self.interval, self.per_period = p0, interval, per_period

    def count(self, lo: int, hi: int) -> int:
        first, last = (
            ceil_in_phase(lo, self.p0, self.interval),
            ceil_in_phase(hi, self.p0, self.interval),
        )
        return max(0, (last - first) // self.interval) * self.per_period

    def next_nonempty(self, p: int, limit: int) -> int | None:
        p = ceil_in_phase(p, self.p0, self.interval)
        return p if self.per_period and p < limit else None

    def run(self, p: int) -> tuple[int, int]:
        return p + _RUN_PERIODS * self.interval, _RUN_PERIODS * self.per_period


class WeekCycle:
    """Periods allowed by their position in the week: ``(p + offset) % modulus`` must fall
    in ``runs``; each allowed in-phase period holds ``per_period`` occurrences.

    The in-phase periods' positions cycle through one residue class modulo
    ``g = gcd(interval, modulus)``. With few runs, counts come from `count_in_runs`
    (O(runs x log)); with many (fragmented BYMINUTE lists), from a table over that
    cycle's ``modulus / g`` positions, built once per pattern and phase.
    """

    _MAX_RUNS = 16

    def __init__(
        self,
        pattern: Pattern,
        p0: int,
        per_period: int,
        units_per_day: int,
        runs: tuple[tuple[int, int], ...],
    ) -> None:
        self.pattern, self.p0, self.interval, self.per_period = pattern, p0, pattern.interval, per_period
        self.units_per_day = units_per_day
        self.modulus = 7 * units_per_day
        self.offset = 6 * units_per_day  # day ordinal 1 is a Monday: position 0
        self.runs = runs
        self.starts = [low for low, _ in runs]
        self.table = None if len(runs) <= self._MAX_RUNS else self._table()

    def _table(self) -> tuple[int, int, list[int], list[int]]:
        """(cycle length, inverse of interval/g, running hit counts, hit indexes) for the
        cycle of positions ``first + j * interval`` (``first`` = p0's position)."""
        modulus, step = self.modulus, self.interval
        g = gcd(step, modulus)
        first = (self.p0 + self.offset) % modulus
        key = ("cycle", first % g)

        def make() -> tuple[int, int, list[int], list[int]]:
            length = modulus // g
            allowed = bytearray(modulus)
            for low, high in self.runs:
                allowed[low:high] = b"\x01" * (high - low)
            base = first % g
            flags = [allowed[(base + j * step) % modulus] for j in range(length)]
            totals = [0, *accumulate(flags)]
            hits = [j for j, flag in enumerate(flags) if flag]
            return length, pow(step // g, -1, length) if length > 1 else 0, totals, hits

        return remember(self.pattern, key, make)

    def _index(self, p: int) -> int:
        """Position of in-phase period ``p`` along the table's cycle."""
        length, inverse, _, _ = self.table
        g = self.modulus // length
        position = (p + self.offset) % self.modulus
        return (position // g) * inverse % length

    def _allowed(self, p: int) -> bool:
        position = (p + self.offset) % self.modulus
        i = bisect_left(self.starts, position + 1) - 1
        return i >= 0 and position < self.runs[i][1]

    def _units(self, lo: int, hi: int) -> int:
        first = ceil_in_phase(lo, self.p0, self.interval)
        n = (ceil_in_phase(hi, self.p0, self.interval) - first) // self.interval
        if n <= 0:
            return 0
        if self.table is None:
            return count_in_runs(n, self.interval, first + self.offset, self.modulus, self.runs)
        length, _, totals, _ = self.table
        j = self._index(first)
        laps, rest = divmod(j + n, length)
        return laps * totals[length] + totals[rest] - totals[j]

    def count(self, lo: int, hi: int) -> int:
        return self._units(lo, hi) * self.per_period if hi > lo else 0

    def cycle_units(self) -> int:
        """Allowed in-phase periods in one full cycle of the pattern (0: never occurs)."""
        span = self.modulus * self.interval  # a multiple of both: the cycle repeats
        return self._units(self.p0, self.p0 + span)

    def next_nonempty(self, p: int, limit: int) -> int | None:
        p = ceil_in_phase(p, self.p0, self.interval)
        step = self.interval
        if not self.per_period:
            return None
        if self.table is not None:
            length, _, _, hits = self.table
            if not hits:
                return None
            j = self._index(p)
            i = bisect_left(hits, j)
            ahead = hits[i] - j if i < len(hits) else hits[0] + length - j
            found = p + ahead * step
            return found if found < limit else None
        for _ in range(_SCAN):
            if p >= limit:
                return None
            if self._allowed(p):
                return p
            p += step
        if not self.cycle_units():
            return None
        # The next allowed period lies within one cycle: bisect on the count.
        low, high = 0, self.modulus  # in steps from p
        while low < high:
            mid = (low + high) // 2
            if self._units(p, p + (mid + 1) * step):
                high = mid
            else:
                low = mid + 1
        found = p + low * step
        return found if found < limit else None

    def run(self, p: int) -> tuple[int, int]:
        if self.units_per_day == 1:
            end = p + _RUN_PERIODS * self.interval
        else:  # to the end of p's day: walking a day of units in dateutil stays cheap
            end = max(p + 1, (p // self.units_per_day + 1) * self.units_per_day)
        return end, self.count(p, end)


class WeekdayDays:
    """Allowed days by weekday alone (``None``: every day)."""

    def __init__(self, weekdays: frozenset[int] | None) -> None:
        self.weekdays = weekdays

    def allowed(self, day: int) -> bool:
        return self.weekdays is None or weekday(day) in self.weekdays

    def days(self, lo: int, hi: int) -> int:
        """Allowed days ``lo <= day < hi``."""
        if hi <= lo:
            return 0
        if self.weekdays is None:
            return hi - lo
        weeks, rest = divmod(hi - lo, 7)
        return weeks * len(self.weekdays) + sum(
            1 for day in range(lo, lo + rest) if weekday(day) in self.weekdays
        )

    def next_day(self, day: int, limit: int) -> int | None:
        for candidate in range(day, min(day + 7, limit)):
            if self.allowed(candidate):
                return candidate
        return None


class CalendarDays:
    """Allowed days from per-year day lists, keeping only days in phase
    (``(day - day0) % interval == 0``); each allowed day holds ``per_day`` occurrences.

    Serves DAILY rules that pick days by calendar (as an engine) and the day filter of
    `FixedTimes`.
    """

    def __init__(self, pattern: Pattern, day0: int, interval: int, per_day: int) -> None:
        self.pattern, self.day0, self.interval, self.per_day = pattern, day0, interval, per_day

    def _year(self, year: int) -> tuple[int, int, tuple[int, ...]]:
        """(first ordinal of the year, year length, in-phase allowed days of year)."""
        first = jan1(year)
        if self.interval == 1:
            return first, 365 + is_leap(year), year_doys(self.pattern, year)
        leap, residue = is_leap(year), (self.day0 - first) % self.interval
        key = ("phased", leap, weekday(first), residue)
        days = remember(
            self.pattern,
            key,
            lambda: tuple(d for d in year_doys(self.pattern, year) if d % self.interval == residue),
        )
        return first, 365 + leap, days

    def allowed(self, day: int) -> bool:
        first, _, days = self._year(year_of(day))
        i = bisect_left(days, day - first)
        return i < len(days) and days[i] == day - first

    def days(self, lo: int, hi: int) -> int:
        """Allowed in-phase days ``lo <= day < hi``."""
        if hi <= lo:
            return 0
        total = 0
        year, last_year = year_of(lo), year_of(hi - 1)
        while year <= last_year:
            first, length, days = self._year(year)
            start = bisect_left(days, lo - first) if lo > first else 0
            end = bisect_left(days, hi - first) if hi < first + length else len(days)
            total += end - start
            year += 1
        return total

    def next_day(self, day: int, limit: int) -> int | None:
        year = year_of(day)
        while True:
            first, length, days = self._year(year)
            if first >= limit:
                return None
            i = bisect_left(days, day - first) if day > first else 0
            if i < len(days):
                found = first + days[i]
                return found if found < limit else None
            year += 1

    # The engine interface, for DAILY periods (one day each).
    def count(self, lo: int, hi: int) -> int:
        return self.days(lo, hi) * self.per_day

    def next_nonempty(self, p: int, limit: int) -> int | None:
        return self.next_day(p, limit) if self.per_day else None

    def run(self, p: int) -> tuple[int, int]:
        return p + 1, self.per_day


class FixedTimes:
    """HOURLY/MINUTELY whose INTERVAL divides a day: each allowed day offers the same
    in-phase times of day ``times`` (in units since midnight), each holding ``per_unit``
    occurrences."""

    def __init__(self, units_per_day: int, times: list[int], per_unit: int, days) -> None:
        self.units_per_day, self.times, self.per_unit, self.days = (
            units_per_day,
            times,
            per_unit,
            days,
        )

    def _from(self, unit: int) -> int:
        return len(self.times) - bisect_left(self.times, unit)

    def count(self, lo: int, hi: int) -> int:
        if hi <= lo:
            return 0
        day_lo, unit_lo = divmod(lo, self.units_per_day)
        day_hi, unit_hi = divmod(hi, self.units_per_day)
        if day_lo == day_hi:
            units = self._from(unit_lo) - self._from(unit_hi) if self.days.allowed(day_lo) else 0
        else:
            units = self._from(unit_lo) if self.days.allowed(day_lo) else 0
            units += len(self.times) * self.days.days(day_lo + 1, day_hi)
            if unit_hi and self.days.allowed(day_hi):
                units += len(self.times) - self._from(unit_hi)
        return units * self.per_unit

    def next_nonempty(self, p: int, limit: int) -> int | None:
        if not self.times or not self.per_unit:
            return None
        day, unit = divmod(p, self.units_per_day)
        if self.days.allowed(day):
            i = bisect_left(self.times, unit)
            if i < len(self.times):
                found = day * self.units_per_day + self.times[i]
                return found if found < limit else None
        day = self.days.next_day(day + 1, limit // self.units_per_day + 1)
        if day is None:
            return None
        found = day * self.units_per_day + self.times[0]
        return found if found < limit else None

    def run(self, p: int) -> tuple[int, int]:
        day, unit = divmod(p, self.units_per_day)
        return (day + 1) * self.units_per_day, self._from(unit) * self.per_unit


class YearPlans:
    """MONTHLY, YEARLY and WEEKLY-with-BYMONTH periods, summed year by year from each
    year's memoised plan: the in-phase non-empty periods starting in it."""

    def __init__(self, pattern: Pattern, p0: int) -> None:
        self.pattern, self.p0 = pattern, p0
        self.freq, self.wkst, self.interval = pattern.freq, pattern.wkst, pattern.interval

    def _plan(self, year: int) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """(first period of the year, offsets of its non-empty in-phase periods from it,
        running totals: ``totals[i]`` occurrences before the i-th)."""
        base = first_period_of_year(self.freq, self.wkst, year)
        phase = (base - self.p0) % self.interval
        first = jan1(year)
        leap, wd0 = is_leap(year), weekday(first)
        prev = is_leap(year - 1) if self.pattern.weeknos else None
        key = ("plan", prev, leap, wd0, phase)
        offsets, totals = remember(self.pattern, key, lambda: self._make_plan(year, phase))
        return base, offsets, totals

    def _make_plan(self, year: int, phase: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        pattern, step = self.pattern, self.interval
        leap, wd0 = is_leap(year), weekday(jan1(year))
        per_day = len(pattern.times)
        counts: list[tuple[int, int]] = []
        if self.freq is Freq.YEARLY:
            if phase == 0:
                counts.append((0, pattern.kept(len(year_doys(pattern, year)) * per_day)))
        elif self.freq is Freq.MONTHLY:
            for month in range((-phase) % step, 12, step):
                counts.append((month, month_count(pattern, year, month + 1)))
        else:
            first_doy = (self.wkst - wd0) % 7
            weeks = (MONTH_STARTS[leap][12] - first_doy + 6) // 7
            for week in range((-phase) % step, weeks, step):
                days = week_day_count(pattern, leap, wd0, first_doy + 7 * week)
                counts.append((week, pattern.kept(days * per_day)))
        offsets, totals, running = [], [0], 0
        for offset, n in counts:
            if n:
                offsets.append(offset)
                running += n
                totals.append(running)
        return tuple(offsets), tuple(totals)

    def count(self, lo: int, hi: int) -> int:
        if hi <= lo:
            return 0
        total = 0
        year, last_year = (
            year_of_period(self.freq, self.wkst, lo),
            year_of_period(self.freq, self.wkst, hi - 1),
        )
        while year <= last_year:
            base, offsets, totals = self._plan(year)
            start = bisect_left(offsets, lo - base)
            end = bisect_left(offsets, hi - base)
            total += totals[end] - totals[start]
            year += 1
        return total

    def next_nonempty(self, p: int, limit: int) -> int | None:
        year = year_of_period(self.freq, self.wkst, p)
        while True:
            base, offsets, _ = self._plan(year)
            if base >= limit:
                return None
            i = bisect_left(offsets, p - base)
            if i < len(offsets):
                found = base + offsets[i]
                return found if found < limit else None
            year += 1

    def run(self, p: int) -> tuple[int, int]:
        base, offsets, totals = self._plan(year_of_period(self.freq, self.wkst, p))
        i = bisect_left(offsets, p - base)
        return p + 1, totals[i + 1] - totals[i]


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
    return sorted(60 * h + m for h in hours for m in minutes)


def _in_phase_times(pattern: Pattern, p0: int) -> list[int]:
    # The interval divides the day: a time of day is in phase on every day or none.
    return [t for t in _times_of_day(pattern) if (t - p0) % pattern.interval == 0]


def _week_runs(pattern: Pattern, units_per_day: int) -> tuple[tuple[int, int], ...]:
    """Allowed positions in the week (units from Monday 00:00) as half-open runs."""
    day_runs = runs_of(_times_of_day(pattern), units_per_day)
    weekdays = sorted(pattern.weekdays) if pattern.weekdays is not None else range(7)
    runs: list[tuple[int, int]] = []
    for day in weekdays:
        for low, high in day_runs:
            low, high = day * units_per_day + low, day * units_per_day + high
            if runs and runs[-1][1] == low:
                runs[-1] = (runs[-1][0], high)
            else:
                runs.append((low, high))
    return tuple(runs)
