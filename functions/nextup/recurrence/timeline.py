"""Periods as integers: each frequency's periods numbered consecutively in wall-clock time.

python-dateutil steps through periods in naive wall-clock arithmetic (a day always has 24
hours, DST or not), so periods are numbered on the naive wall clock too:

* YEARLY: the year; MONTHLY: ``12 * year + month - 1``;
* WEEKLY: weeks starting on WKST, ``(ordinal - 1 - wkst) // 7``;
* DAILY: the day ordinal; HOURLY: ``24 * ordinal + hour``;
  MINUTELY: ``1440 * ordinal + 60 * hour + minute``.

The series' periods are then those ``p`` with ``(p - p0) % interval == 0``.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo

from nextup.recurrence.daymath import jan1, weekday, year_of
from nextup.recurrence.model import Freq

UNITS_PER_DAY = {Freq.DAILY: 1, Freq.HOURLY: 24, Freq.MINUTELY: 1440}


def period_of(freq: Freq, wkst: int, wall: datetime) -> int:
    """Index of the period holding wall time ``wall`` (its tzinfo is ignored)."""
    if freq is Freq.YEARLY:
        return wall.year
    if freq is Freq.MONTHLY:
        return 12 * wall.year + wall.month - 1
    ordinal = wall.toordinal()
    if freq is Freq.WEEKLY:
        return (ordinal - 1 - wkst) // 7
    if freq is Freq.DAILY:
        return ordinal
    if freq is Freq.HOURLY:
        return 24 * ordinal + wall.hour
    return 1440 * ordinal + 60 * wall.hour + wall.minute


def period_start(freq: Freq, wkst: int, p: int, tz: tzinfo | None = None) -> datetime:
    """Wall time at which period ``p`` starts, with tzinfo ``tz``."""
    if freq is Freq.YEARLY:
        return datetime(p, 1, 1, 0, 0, 0, 0, tz)
    if freq is Freq.MONTHLY:
        return datetime(p // 12, p % 12 + 1, 1, 0, 0, 0, 0, tz)
    if freq is Freq.WEEKLY:
        day = date.fromordinal(7 * p + 1 + wkst)
        return datetime(day.year, day.month, day.day, 0, 0, 0, 0, tz)
    days, rest = divmod(p, UNITS_PER_DAY[freq])
    day = date.fromordinal(days)
    if freq is Freq.HOURLY:
        return datetime(day.year, day.month, day.day, rest, 0, 0, 0, tz)
    if freq is Freq.MINUTELY:
        return datetime(day.year, day.month, day.day, rest // 60, rest % 60, 0, 0, tz)
    return datetime(day.year, day.month, day.day, 0, 0, 0, 0, tz)


def year_of_period(freq: Freq, wkst: int, p: int) -> int:
    """Calendar year in which period ``p`` starts."""
    if freq is Freq.YEARLY:
        return p
    if freq is Freq.MONTHLY:
        return p // 12
    if freq is Freq.WEEKLY:
        return year_of(7 * p + 1 + wkst)
    return year_of(p // UNITS_PER_DAY[freq])


def first_period_of_year(freq: Freq, wkst: int, year: int) -> int:
    """Index of the first period starting in ``year``."""
    if freq is Freq.YEARLY:
        return year
    if freq is Freq.MONTHLY:
        return 12 * year
    first = jan1(year)
    if freq is Freq.WEEKLY:
        first += (wkst - weekday(first)) % 7
        return (first - 1 - wkst) // 7
    return first * UNITS_PER_DAY[freq]


def ceil_in_phase(p: int, p0: int, interval: int) -> int:
    """The first period at or after ``p`` in phase with ``p0``."""
    return p + (p0 - p) % interval


def floor_in_phase(p: int, p0: int, interval: int) -> int:
    """The last period at or before ``p`` in phase with ``p0``."""
    return p - (p - p0) % interval
