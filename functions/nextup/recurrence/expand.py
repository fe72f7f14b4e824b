"""Which days of a period a pattern keeps, written from RFC 5545 and checked against
python-dateutil by the differential tests.

A period's candidates are its days passing every day filter, each combined with the
pattern's times; BYSETPOS then keeps candidates by position. The filters, as dateutil
applies them (it intersects them all):

* BYMONTH: the day's month (a week running into January counts as January);
* BYWEEKNO (YEARLY only): dateutil's own week mask, asked of dateutil itself because it
  has quirks around the first and last weeks (see `weekno_doys`);
* BYDAY weekdays; ordinal BYDAY: the n-th weekday of the month (MONTHLY, or YEARLY with
  BYMONTH) or of the year (YEARLY without BYMONTH), counted from the end when negative;
* BYMONTHDAY and BYYEARDAY, negative values counted from the end of the month / year.

Days are handled as 0-based days of year (``doy``) of a calendar year whose length and
weekday of 1 January are known; results are memoised on the pattern by those.
"""

from __future__ import annotations

from datetime import datetime

from dateutil.rrule import YEARLY, rrule

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
            kwargs = memo.get("kwargs")
            memo.clear()
            if kwargs is not None:
                memo["kwargs"] = kwargs
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
    weekdays, yeardays, year_len = pattern.weekdays, pattern.yeardays, MONTH_STARTS[leap][12]
    kept = []
    for doy in days:
        if weekdays is not None and (wd0 + doy) % 7 not in weekdays:
            continue
        if nth is not None and doy not in nth:
            continue
        if yeardays is not None and doy + 1 not in yeardays and doy - year_len not in yeardays:
            continue
        if weekno is not None and doy not in weekno:
            continue
        kept.append(doy)
    return kept


def weekno_doys(pattern: Pattern, year: int) -> frozenset[int]:
    """Days of ``year`` in the weeks BYWEEKNO names, exactly as python-dateutil marks them.

    dateutil's mask differs from ISO 8601 at year boundaries (e.g. it puts 2011-01-01,
    ISO week 52 of 2010, in week 53), so the mask is taken from dateutil: one YEARLY
    period with only BYWEEKNO. It depends on the year's length and weekday and on the
    previous year's length, which is the memo key.
    """
    first = jan1(year)
    key = ("weekno", is_leap(year - 1), is_leap(year), weekday(first))

    def make() -> frozenset[int]:
        one_year = rrule(
            YEARLY,
            dtstart=datetime(year, 1, 1),
            interval=10_000,  # the second period would lie past year 9999: one period only
            wkst=pattern.wkst,
            byweekno=pattern.weeknos,
            byhour=0,
            byminute=0,
            bysecond=0,
        )
        return frozenset(day.toordinal() - first for day in one_year)

    return remember(pattern, key, make)


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


def month_doys(pattern: Pattern, year: int, month: int) -> list[int]:
    """Days (doy) of one MONTHLY period the pattern's day filters keep."""
    leap, wd0 = is_leap(year), weekday(jan1(year))
    nth = None
    if pattern.nweekdays:
        starts = MONTH_STARTS[leap]
        nth = _nth_days(pattern.nweekdays, wd0, starts[month - 1], starts[month] - 1)
    if pattern.months is not None and month not in pattern.months:
        return []
    return _month_doys(pattern, leap, wd0, month, nth, None)


def month_count(pattern: Pattern, year: int, month: int) -> int:
    """Occurrences in one MONTHLY period: it only depends on the month, its length and
    the weekday it starts on."""
    leap = is_leap(year)
    first_weekday = (weekday(jan1(year)) + MONTH_STARTS[leap][month - 1]) % 7
    key = ("month", month, MONTH_LENGTHS[leap][month - 1], first_weekday)
    return remember(
        pattern,
        key,
        lambda: pattern.kept(len(month_doys(pattern, year, month)) * len(pattern.times)),
    )


def week_day_count(pattern: Pattern, leap: bool, wd0: int, first_doy: int, days: int = 7) -> int:
    """Days a WEEKLY period keeps, the period being ``days`` days from ``first_doy`` of a
    year with the given length and weekday (days past the year's end are in January)."""
    weekdays, months = pattern.weekdays, pattern.months
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
        kept = [ordinal + i for i in range(length) if week_day_count(pattern, leap, wd0, doy + i, 1)]
        return kept, times
    per_day = UNITS_PER_DAY[freq]
    ordinal, unit = divmod(p, per_day)
    year = year_of(ordinal)
    if ordinal - jan1(year) not in year_doy_set(pattern, year):
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
