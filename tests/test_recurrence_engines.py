"""The counting engines against period-by-period enumeration, and their arithmetic."""

from __future__ import annotations

import random
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextup.recurrence import parse_rule
from nextup.recurrence.calendar_plans import YearSums
from nextup.recurrence.cyclic import WeekCycle
from nextup.recurrence.daymath import (
    MONTH_STARTS,
    count_in_runs,
    floor_sum,
    month_of_doy,
    runs_of,
)
from nextup.recurrence.engines import engine_for
from nextup.recurrence.expand import occurrences
from nextup.recurrence.pattern import pattern_for
from nextup.recurrence.timeline import (
    ceil_in_phase,
    first_period_of_year,
    period_of,
    period_start,
    year_of_period,
)


@given(st.integers(0, 60), st.integers(1, 50), st.integers(-100, 100), st.integers(-500, 500))
def test_floor_sum(n: int, m: int, a: int, b: int) -> None:
    assert floor_sum(n, m, a, b) == sum((a * i + b) // m for i in range(n))


@given(
    st.integers(0, 300),
    st.integers(1, 40),
    st.integers(-1000, 1000),
    st.integers(1, 60),
    st.sets(st.integers(0, 59)),
)
def test_count_in_runs(n: int, step: int, first: int, modulus: int, members: set[int]) -> None:
    members = {m for m in members if m < modulus}
    runs = runs_of(members, modulus)
    expected = sum(1 for i in range(n) if (first + step * i) % modulus in members)
    assert count_in_runs(n, step, first, modulus, runs) == expected


def test_month_of_doy() -> None:
    for leap in (False, True):
        for doy in range(MONTH_STARTS[leap][12] + 7):
            year = 2024 if leap else 2023
            expected = (
                1
                if doy >= MONTH_STARTS[leap][12]
                else date.fromordinal(date(year, 1, 1).toordinal() + doy).month
            )
            assert month_of_doy(leap, doy) == expected


def test_periods_round_trip() -> None:
    for freq_name in ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY"):
        rule = parse_rule(f"FREQ={freq_name};WKST=WE")
        for wall in (
            datetime(1999, 12, 31, 23, 59),
            datetime(2024, 2, 29, 12, 30),
            datetime(2030, 1, 1),
        ):
            p = period_of(rule.freq, rule.wkst, wall)
            start = period_start(rule.freq, rule.wkst, p)
            assert start <= wall < period_start(rule.freq, rule.wkst, p + 1)
            assert year_of_period(rule.freq, rule.wkst, p) == start.year
            first = first_period_of_year(rule.freq, rule.wkst, start.year)
            assert period_start(rule.freq, rule.wkst, first).year == start.year
            assert period_start(rule.freq, rule.wkst, first - 1).year == start.year - 1


ENGINE_RULES = [
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
    "FREQ=YEARLY;INTERVAL=3;BYWEEKNO=1,-1;BYDAY=MO,SU",
    "FREQ=YEARLY;BYYEARDAY=1,-1,60;BYHOUR=1,2;BYSETPOS=-1",
    "FREQ=MONTHLY;INTERVAL=5;BYDAY=-1FR,1MO;BYSETPOS=2",
    "FREQ=MONTHLY;BYMONTHDAY=29,30,31",
    "FREQ=WEEKLY;INTERVAL=3;BYMONTH=1,12;BYDAY=MO,SU;BYSETPOS=-1",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,FR;BYHOUR=8,20",
    "FREQ=DAILY;INTERVAL=4;BYMONTH=2,3;BYMONTHDAY=1,-1",
    "FREQ=DAILY;INTERVAL=3;BYDAY=SA,SU",
    "FREQ=HOURLY;INTERVAL=6;BYMONTHDAY=1,15;BYHOUR=0,6,18",
    "FREQ=HOURLY;INTERVAL=7;BYDAY=MO;BYHOUR=1,2,3,20",
    "FREQ=MINUTELY;INTERVAL=30;BYYEARDAY=100,200;BYHOUR=9",
    "FREQ=MINUTELY;INTERVAL=11;BYDAY=MO,WE;BYHOUR=9,12",
    "FREQ=MINUTELY;INTERVAL=13;BYDAY=TU;BYMINUTE=0,7,14,21,28,35,42,49,56;BYHOUR=1,3,5,7,9,11,13",
]


@pytest.mark.parametrize("text", ENGINE_RULES)
def test_engine_counts_match_enumeration(text: str) -> None:
    """count and next_nonempty against walking the periods one by one with `occurrences`."""
    rule = parse_rule(text)
    rng = random.Random(text)
    span = {
        "YEARLY": 30,
        "MONTHLY": 120,
        "WEEKLY": 150,
        "DAILY": 400,
        "HOURLY": 2000,
        "MINUTELY": 6000,
    }
    for _ in range(3):
        start = datetime(2000, 1, 1) + (datetime(2030, 1, 1) - datetime(2000, 1, 1)) * rng.random()
        start = start.replace(hour=0, microsecond=0)  # BYHOUR=0,6,18 in phase with INTERVAL=6
        pattern = pattern_for(rule, start)
        p0 = period_of(rule.freq, rule.wkst, start)
        engine = engine_for(pattern, p0)
        first = p0 + 1
        last = first + span[rule.freq.name] * rule.interval
        counts = {
            p: len(occurrences(pattern, p))
            for p in range(ceil_in_phase(first, p0, rule.interval), last, rule.interval)
        }
        for _ in range(20):
            lo, hi = sorted(rng.randrange(first, last) for _ in range(2))
            assert engine.count(lo, hi) == sum(n for p, n in counts.items() if lo <= p < hi)
            found = engine.next_nonempty(lo, last)
            expected = next((p for p in sorted(counts) if p >= lo and counts[p]), None)
            assert found == expected


def test_week_cycle_table_matches_floor_sums() -> None:
    """Fragmented BYMINUTE lists switch `WeekCycle` to a table; both ways agree."""
    rule = parse_rule(ENGINE_RULES[-1])
    start = datetime(2024, 5, 6, 1, 3)
    pattern = pattern_for(rule, start)
    p0 = period_of(rule.freq, rule.wkst, start)
    engine = engine_for(pattern, p0)
    assert isinstance(engine, WeekCycle) and engine.table is not None
    sums = WeekCycle(pattern, p0, engine.per_period, engine.units_per_day, engine.runs)
    sums.table = None
    rng = random.Random(7)
    for _ in range(200):
        lo, hi = sorted(rng.randrange(p0 + 1, p0 + 500_000) for _ in range(2))
        assert engine.count(lo, hi) == sums.count(lo, hi)
        assert engine.next_nonempty(lo, 10**12) == sums.next_nonempty(lo, 10**12)


def test_year_sums_extend_both_ways() -> None:
    sums = YearSums(lambda year: year % 7)
    assert sums.between(2000, 2010) == sum(y % 7 for y in range(2000, 2010))
    assert sums.between(1990, 2030) == sum(y % 7 for y in range(1990, 2030))
    assert sums.between(1995, 1996) == 1995 % 7
    assert sums.between(2005, 2005) == 0


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 12), st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"]))
def test_month_plans_repeat_every_400_years(month: int, day: str) -> None:
    rule = parse_rule(f"FREQ=MONTHLY;BYDAY={day};BYMONTH={month};BYSETPOS=-1")
    start = datetime(2001, 1, 1)
    engine = engine_for(pattern_for(rule, start), period_of(rule.freq, rule.wkst, start))
    # A whole Gregorian cycle holds one last-weekday per year; two cycles twice as many.
    first = first_period_of_year(rule.freq, rule.wkst, 2001)
    assert engine.count(first, first + 12 * 400) == 400
    assert engine.count(first, first + 12 * 800) == 800


@pytest.mark.parametrize("wkst", range(7))
def test_week_numbers_match_dateutil(wkst: int) -> None:
    """BYWEEKNO days as python-dateutil marks them, for every kind of year (length, weekday
    of 1 January, previous year's length: all occur in 2001-2028), edge weeks included."""
    from dateutil.rrule import YEARLY, rrule

    from nextup.recurrence.daymath import is_leap, jan1, weekday
    from nextup.recurrence.expand import week_number_days

    for year in range(2001, 2029):
        first = jan1(year)
        for n in (1, 2, 3, 26, 51, 52, 53, -1, -2, -3, -51, -52, -53):
            marked = rrule(
                YEARLY,
                dtstart=datetime(year, 1, 1),
                interval=10_000,
                wkst=wkst,
                byweekno=[n],
                byhour=0,
                byminute=0,
                bysecond=0,
            )
            expected = frozenset(day.toordinal() - first for day in marked)
            got = week_number_days((n,), wkst, is_leap(year - 1), is_leap(year), weekday(first))
            assert got == expected, (year, wkst, n)
