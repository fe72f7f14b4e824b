"""Engines for patterns that pick days by calendar: memoised per-year plans.

Which days and periods of a year have occurrences depends only on the year's length, the
weekday of 1 January (the previous year's length too for BYWEEKNO) and the interval phase
at the year's start. So each year's list of non-empty periods (its *plan*) is memoised
by that signature (the Gregorian calendar repeats every 400 years: a pattern meets a few
dozen signatures), and sums over spans of whole years are kept as running totals.
"""

from __future__ import annotations

from bisect import bisect_left

from nextup.recurrence.daymath import MONTH_STARTS, is_leap, jan1, weekday, year_of
from nextup.recurrence.expand import month_count, remember, week_day_count, year_doys
from nextup.recurrence.model import Freq
from nextup.recurrence.pattern import Pattern
from nextup.recurrence.timeline import (
    ceil_in_phase,
    first_period_of_year,
    year_of_period,
)


class YearSums:
    """Running totals of a per-year count over consecutive years, extended on demand,
    so that summing any span of whole years costs two lookups once warm.

    The totals are replaced, never changed in place, so threads sharing a pattern never
    see a half-extended list.
    """

    def __init__(self, total_of) -> None:
        self.total_of = total_of
        # (first year, sums): sums[i] is the total of the years first .. first + i - 1.
        self.state: tuple[int, tuple[int, ...]] | None = None

    def between(self, first: int, last: int) -> int:
        """Total of the years ``first <= year < last``."""
        if last <= first:
            return 0
        state = self.state
        if state is None or first < state[0] or last > state[0] + len(state[1]) - 1:
            state = self.state = self._covering(state, first, last)
        base, sums = state
        return sums[last - base] - sums[first - base]

    def _covering(
        self, state: tuple[int, tuple[int, ...]] | None, first: int, last: int
    ) -> tuple[int, tuple[int, ...]]:
        base, sums = state if state is not None else (first, (0,))
        if first < base:  # rebuild from the earlier year
            base, sums = first, (0,)
            last = max(last, state[0] + len(state[1]) - 1)
        extended = list(sums)
        while base + len(extended) - 1 < last:
            extended.append(extended[-1] + self.total_of(base + len(extended) - 1))
        return base, tuple(extended)


class CalendarDays:
    """Allowed days from per-year day lists, keeping only days in phase
    (``(day - day0) % interval == 0``); each allowed day holds ``per_day`` occurrences.

    Serves DAILY rules that pick days by calendar (as an engine) and the day filter of
    `FixedTimes`.
    """

    def __init__(self, pattern: Pattern, day0: int, interval: int, per_day: int) -> None:
        self.pattern, self.day0, self.interval, self.per_day = pattern, day0, interval, per_day

    def _year(self, year: int) -> tuple[int, tuple[int, ...]]:
        """(first ordinal of the year, its in-phase allowed days of year)."""
        first = jan1(year)
        if self.interval == 1:
            return first, year_doys(self.pattern, year)
        leap, residue = is_leap(year), (self.day0 - first) % self.interval
        key = ("phased", leap, weekday(first), residue)
        days = remember(
            self.pattern,
            key,
            lambda: tuple(d for d in year_doys(self.pattern, year) if d % self.interval == residue),
        )
        return first, days

    def allowed(self, day: int) -> bool:
        first, days = self._year(year_of(day))
        i = bisect_left(days, day - first)
        return i < len(days) and days[i] == day - first

    def days(self, lo: int, hi: int) -> int:
        """Allowed in-phase days ``lo <= day < hi``."""
        if hi <= lo:
            return 0
        year, last_year = year_of(lo), year_of(hi - 1)
        first, days = self._year(year)
        if year == last_year:
            return bisect_left(days, hi - first) - bisect_left(days, lo - first)
        total = len(days) - bisect_left(days, lo - first)
        first, days = self._year(last_year)
        total += bisect_left(days, hi - first)
        sums = remember(
            self.pattern,
            ("daysums", self.day0 % self.interval),
            lambda: YearSums(lambda y: len(self._year(y)[1])),
        )
        return total + sums.between(year + 1, last_year)

    def next_day(self, day: int, limit: int) -> int | None:
        year = year_of(day)
        while True:
            first, days = self._year(year)
            if first >= limit:
                return None
            i = bisect_left(days, day - first) if day > first else 0
            if i < len(days):
                found = first + days[i]
                return found if found < limit else None
            # On to the year of the next in-phase day (years apart for long intervals).
            next_day = ceil_in_phase(max(jan1(year + 1), day), self.day0, self.interval)
            year = max(year + 1, year_of(min(next_day, limit)))

    # The engine interface, for DAILY periods (one day each).
    def count(self, lo: int, hi: int) -> int:
        return self.days(lo, hi) * self.per_day

    def next_nonempty(self, p: int, limit: int) -> int | None:
        return self.next_day(p, limit) if self.per_day else None


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
        year = year_of_period(self.freq, self.wkst, lo)
        last_year = year_of_period(self.freq, self.wkst, hi - 1)
        base, offsets, totals = self._plan(year)
        if year == last_year:
            return totals[bisect_left(offsets, hi - base)] - totals[bisect_left(offsets, lo - base)]
        total = totals[-1] - totals[bisect_left(offsets, lo - base)]
        base, offsets, totals = self._plan(last_year)
        total += totals[bisect_left(offsets, hi - base)]
        sums = remember(
            self.pattern,
            ("plansums", self.p0 % self.interval),
            lambda: YearSums(lambda y: self._plan(y)[2][-1]),
        )
        return total + sums.between(year + 1, last_year)

    def _count_of(self, p: int) -> int:
        """Occurrences of the in-phase period ``p`` (without building its year's plan)."""
        pattern = self.pattern
        if self.freq is Freq.MONTHLY:
            return month_count(pattern, p // 12, p % 12 + 1)
        if self.freq is Freq.YEARLY:
            return pattern.kept(len(year_doys(pattern, p)) * len(pattern.times))
        ordinal = 7 * p + 1 + self.wkst
        year = year_of(ordinal)
        first = jan1(year)
        days = week_day_count(pattern, is_leap(year), weekday(first), ordinal - first)
        return pattern.kept(days * len(pattern.times))

    def next_nonempty(self, p: int, limit: int) -> int | None:
        p = ceil_in_phase(p, self.p0, self.interval)
        if p < limit and self._count_of(p):
            return p  # the common case, answered from one period's memoised count
        year = year_of_period(self.freq, self.wkst, p)
        while True:
            base, offsets, _ = self._plan(year)
            if base >= limit:
                return None
            i = bisect_left(offsets, p - base)
            if i < len(offsets):
                found = base + offsets[i]
                return found if found < limit else None
            # On to the year of the next in-phase period (years apart for long intervals).
            following = first_period_of_year(self.freq, self.wkst, year + 1)
            next_p = ceil_in_phase(max(following, p), self.p0, self.interval)
            year = max(year + 1, year_of_period(self.freq, self.wkst, min(next_p, limit)))
