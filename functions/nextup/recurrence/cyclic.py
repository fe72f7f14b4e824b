"""Engines for patterns that repeat every week: counting is arithmetic.

When which periods have occurrences depends only on their position in the week (days
picked by weekday, hours and minutes of the day), the in-phase periods form an arithmetic
progression and their positions modulo a week cycle; counts over any span come from
`daymath.count_in_runs` (`floor_sum`) or, for fragmented patterns, from a table over one
cycle, so they cost the same for a series a day old or twenty years old.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate
from math import gcd

from nextup.recurrence.daymath import count_in_runs, weekday
from nextup.recurrence.expand import remember
from nextup.recurrence.pattern import Pattern
from nextup.recurrence.timeline import ceil_in_phase

# Periods checked one by one before `WeekCycle` falls back to bisection.
_SCAN = 32


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
        self.pattern, self.p0, self.interval, self.per_period = (
            pattern,
            p0,
            pattern.interval,
            per_period,
        )
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
