"""Which days of a period a pattern keeps, written from RFC 5545 and checked against
python-dateutil by the differential tests.

A period's candidates are its days passing every day filter, each combined with the
pattern's times; BYSETPOS then keeps candidates by position. The filters, as dateutil
applies them (it intersects them all):

* BYMONTH: the day's month (a week running into January counts as January);
* BYWEEKNO (YEARLY only): ISO weeks starting on WKST, numbered at the year's edges as
  dateutil numbers them (see `week_number_days`);
* BYDAY weekdays; ordinal BYDAY: the n-th weekday of the month (MONTHLY, or YEARLY with
  BYMONTH) or of the year (YEARLY without BYMONTH), counted from the end when negative;
* BYMONTHDAY and BYYEARDAY, negative values counted from the end of the month / year.

Days are handled as 0-based days of year (``doy``) of a calendar year whose length and
weekday of 1 January are known; results are memoised on the pattern by those.
"""

from __future__ import annotations

from datetime import datetime

from nextup.recurrence.daymath import (
    MONTH_LENGTHS,
    MONTH_STARTS,
    is_leap,
    jan1,
    month_of_doy,
    weekday,
    year_of,
)
from nextup.recurrence.model import Freq
from nextup.recurrence.pattern import MEMO_LIMIT, Pattern
from nextup.recurrence.timeline import UNITS_PER_DAY, period_of


def remember(pattern: Pattern, key: tuple, make) -> object:
    """``pattern.memo[key]``, computed by ``make()`` on first use (memo bounded)."""
    memo = pattern.memo
    found = memo.get(key)
    if found is None:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        found = memo[key] = make()
    return found


def _nth_days(
    nweekdays: tuple[tuple[int, int], ...], wd0: int, first: int, last: int
) -> frozenset[int]:
    """Days (doy) that are the n-th given weekday within ``first..last`` (inclusive)."""
    days = set()
    for day, n in nweekdays:
        if n > 0:
            doy = first + (n - 1) * 7 + (day - (wd0 + first)) % 7
        else:
            doy = last + (n + 1) * 7 - ((wd0 + last) - day) % 7
        if first <= doy <= last:
            days.add(doy)
    return frozenset(days)


def _month_doys(
    pattern: Pattern,
    leap: bool,
    wd0: int,
    month: int,
    nth: frozenset[int] | None,
    weekno: frozenset[int] | None,
) -> list[int]:
    start = MONTH_STARTS[leap][month - 1]
    length = MONTH_LENGTHS[leap][month - 1]
    if pattern.monthdays is None:
        days = range(start, start + length)
    else:
        days = sorted(  # a set: 15 and -17 are the same day in a 31-day month
            {
                start + (d - 1 if d > 0 else length + d)
                for d in pattern.monthdays
                if -length <= d <= length
            }
        )
    # One pass per filter in use: fewer tests per day than one pass testing them all.
    if pattern.weekdays is not None:
        weekdays = pattern.weekdays
        days = [doy for doy in days if (wd0 + doy) % 7 in weekdays]
    if nth is not None:
        days = [doy for doy in days if doy in nth]
    if pattern.yeardays is not None:
        yeardays, year_len = pattern.yeardays, MONTH_STARTS[leap][12]
        days = [doy for doy in days if doy + 1 in yeardays or doy - year_len in yeardays]
    if weekno is not None:
        days = [doy for doy in days if doy in weekno]
    return list(days)


def weekno_doys(pattern: Pattern, year: int) -> frozenset[int]:
    """Days of ``year`` in the weeks BYWEEKNO names, numbered as python-dateutil does."""
    first = jan1(year)
    leap_prev, leap, wd0 = is_leap(year - 1), is_leap(year), weekday(first)
    key = ("weekno", leap_prev, leap, wd0)
    return remember(
        pattern,
        key,
        lambda: week_number_days(pattern.weeknos, pattern.wkst, leap_prev, leap, wd0),
    )


def week_number_days(
    weeknos: tuple[int, ...], wkst: int, leap_prev: bool, leap: bool, wd0: int
) -> frozenset[int]:
    """Days (doy) of a year in the numbered weeks: ISO 8601 weeks starting on ``wkst``
    (week 1 is the first with at least 4 days in the year), negatives counted from the
    year's last week, for a year of the given length whose 1 January is weekday ``wd0``.

    Days before week 1 belong to the previous year's last week and days after the last
    week to the next year's week 1; python-dateutil numbers those as follows, and so
    does this (tested against it): the tail days count only as week 1 (not by their
    negative number), and when the previous year's week 1 started by its 4th day
    dateutil takes the previous year's last week to be 52, or 53 when *this* year's
    days from its week 1 leave 4-6 over (so 2011-01-01, in ISO week 52 of 2010, is
    in week 53 for dateutil).
    """
    year_len = 365 + leap
    first_wkst = (wkst - wd0) % 7  # day of year of the first WKST day
    week1 = first_wkst - 7 if first_wkst >= 4 else first_wkst  # may start last year
    span = year_len - week1
    weeks = span // 7 + (span % 7) // 4
    days: set[int] = set()
    for n in weeknos:
        number = n + weeks + 1 if n < 0 else n
        if 1 <= number <= weeks:
            start = week1 + (number - 1) * 7
            days.update(range(max(start, 0), start + 7))
    if 1 in weeknos:
        days.update(range(week1 + weeks * 7, year_len))
    if week1 > 0:
        if -1 in weeknos:
            previous_last = -1
        else:
            prev_wd0 = (wd0 - 365 - leap_prev) % 7
            prev_first_wkst = (wkst - prev_wd0) % 7
            if prev_first_wkst >= 4:
                previous_last = 52 + (365 + leap_prev + 7 - prev_first_wkst) % 7 // 4
            else:
                previous_last = 52 + span % 7 // 4
        if previous_last in weeknos:
            days.update(range(week1))
    return frozenset(day for day in days if 0 <= day < year_len)


def year_doys(pattern: Pattern, year: int) -> tuple[int, ...]:
    """Days of ``year`` (doy, ascending) the pattern's day filters keep, taking the year as
    the frame: YEARLY periods, and days for DAILY, HOURLY and MINUTELY."""
    leap, wd0 = is_leap(year), weekday(jan1(year))
    prev = is_leap(year - 1) if pattern.weeknos else None
    key = ("year", prev, leap, wd0)

    def make() -> tuple[int, ...]:
        weekno = weekno_doys(pattern, year) if pattern.weeknos else None
        months = sorted(pattern.months) if pattern.months else range(1, 13)
        starts = MONTH_STARTS[leap]
        year_nth = None
        if pattern.nweekdays and not pattern.months:
            year_nth = _nth_days(pattern.nweekdays, wd0, 0, starts[12] - 1)
        kept: list[int] = []
        for month in months:
            nth = year_nth
            if pattern.nweekdays and pattern.months:
                nth = _nth_days(pattern.nweekdays, wd0, starts[month - 1], starts[month] - 1)
            kept.extend(_month_doys(pattern, leap, wd0, month, nth, weekno))
        return tuple(kept)

    return remember(pattern, key, make)


def year_doy_set(pattern: Pattern, year: int) -> frozenset[int]:
    leap, wd0 = is_leap(year), weekday(jan1(year))
    return remember(pattern, ("yearset", leap, wd0), lambda: frozenset(year_doys(pattern, year)))


def day_allowed(pattern: Pattern, ordinal: int) -> bool:
    """Whether a DAILY, HOURLY or MINUTELY pattern's day filters keep the day."""
    if not pattern.calendar_days:
        return pattern.weekdays is None or (ordinal + 6) % 7 in pattern.weekdays
    year = year_of(ordinal)
    return ordinal - jan1(year) in year_doy_set(pattern, year)


def month_doys(pattern: Pattern, year: int, month: int) -> list[int]:
    """Days (doy) of one MONTHLY period the pattern's day filters keep."""
    leap, wd0 = is_leap(year), weekday(jan1(year))
    start = MONTH_STARTS[leap][month - 1]
    # Which days a month keeps depends on its length and first weekday, and on the month
    # itself only through BYMONTH.
    named = month if pattern.months is not None else 0
    key = ("monthdays", named, MONTH_LENGTHS[leap][month - 1], (wd0 + start) % 7)
    offsets = remember(pattern, key, lambda: _month_offsets(pattern, leap, wd0, month))
    return [start + offset for offset in offsets]


def _month_offsets(pattern: Pattern, leap: bool, wd0: int, month: int) -> tuple[int, ...]:
    if pattern.months is not None and month not in pattern.months:
        return ()
    starts = MONTH_STARTS[leap]
    nth = None
    if pattern.nweekdays:
        nth = _nth_days(pattern.nweekdays, wd0, starts[month - 1], starts[month] - 1)
    return tuple(
        doy - starts[month - 1] for doy in _month_doys(pattern, leap, wd0, month, nth, None)
    )


def month_count(pattern: Pattern, year: int, month: int) -> int:
    """Occurrences in one MONTHLY period (memoised like `month_doys`)."""
    leap = is_leap(year)
    first_weekday = (weekday(jan1(year)) + MONTH_STARTS[leap][month - 1]) % 7
    named = month if pattern.months is not None else 0
    key = ("month", named, MONTH_LENGTHS[leap][month - 1], first_weekday)
    return remember(
        pattern,
        key,
        lambda: pattern.kept(len(month_doys(pattern, year, month)) * len(pattern.times)),
    )


def week_day_count(pattern: Pattern, leap: bool, wd0: int, first_doy: int, days: int = 7) -> int:
    """Days a WEEKLY period keeps, the period being ``days`` days from ``first_doy`` of a
    year with the given length and weekday (days past the year's end are in January)."""
    weekdays, months = pattern.weekdays, pattern.months
    if days == 7 and (
        months is None or month_of_doy(leap, first_doy) == month_of_doy(leap, first_doy + 6)
    ):
        # A whole week within one month: all seven weekdays, one month.
        return len(weekdays) if months is None or month_of_doy(leap, first_doy) in months else 0
    kept = 0
    for doy in range(first_doy, first_doy + days):
        if (wd0 + doy) % 7 in weekdays and (months is None or month_of_doy(leap, doy) in months):
            kept += 1
    return kept


def candidates(pattern: Pattern, p: int, start: datetime | None = None):
    """(days as ordinals, times) whose product, in order, is period ``p``'s candidate
    list before BYSETPOS; times are (h, m, s). ``start`` marks the series' first period,
    which for WEEKLY python-dateutil cuts to run from the start's day only.
    """
    freq, times = pattern.freq, pattern.times
    if freq is Freq.YEARLY:
        first = jan1(p)
        return [first + doy for doy in year_doys(pattern, p)], times
    if freq is Freq.MONTHLY:
        year = p // 12
        first = jan1(year)
        return [first + doy for doy in month_doys(pattern, year, p % 12 + 1)], times
    if freq is Freq.WEEKLY:
        ordinal = 7 * p + 1 + pattern.wkst
        length = 7
        if start is not None:
            ordinal = start.toordinal()
            length = (pattern.wkst - weekday(ordinal) - 1) % 7 + 1  # up to the next WKST day
        year = year_of(ordinal)
        first = jan1(year)
        leap, wd0 = is_leap(year), weekday(first)
        doy = ordinal - first
        kept = [
            ordinal + i for i in range(length) if week_day_count(pattern, leap, wd0, doy + i, 1)
        ]
        return kept, times
    ordinal, unit = divmod(p, UNITS_PER_DAY[freq])
    if not day_allowed(pattern, ordinal):
        return [], times
    if freq is Freq.HOURLY:
        if pattern.hours is not None and unit not in pattern.hours:
            return [], times
        return [ordinal], tuple((unit, *t) for t in times)
    if freq is Freq.MINUTELY:
        hour, minute = divmod(unit, 60)
        if (pattern.hours is not None and hour not in pattern.hours) or (
            pattern.minutes is not None and minute not in pattern.minutes
        ):
            return [], times
        return [ordinal], tuple((hour, minute, *t) for t in times)
    return [ordinal], times


def occurrences(pattern: Pattern, p: int, start: datetime | None = None) -> list[tuple]:
    """Period ``p``'s occurrences as ``(ordinal, h, m, s)``, ascending, after BYSETPOS
    (and, for the series' first period, only those at or after ``start``)."""
    days, times = candidates(pattern, p, start)
    if not days or not times:
        return []
    width = len(times)
    if width == 1 and len(days) == 1 and pattern.setpos is None:
        found = [(days[0], *times[0])]
    else:
        found = [(days[i // width], *times[i % width]) for i in pattern.picks(len(days) * width)]
    if start is not None:
        here = (start.toordinal(), start.hour, start.minute, start.second)
        found = [o for o in found if o >= here]
    return found


def first_period_count(pattern: Pattern, start: datetime) -> int:
    """Occurrences of the series' first period at or after its start ``start``.

    Like python-dateutil, the first WEEKLY period runs from the start's day to the end of
    its week only (BYSETPOS counts within that shortened week); other periods are whole
    and lose only what lies before the start.
    """
    return len(occurrences(pattern, period_of(pattern.freq, pattern.wkst, start), start))
