"""Starts whose tzinfo comes from python-dateutil (``gettz``, ``tzutc``, ``tzoffset``,
``tzlocal``, ``tzstr``): these zones cannot be hashed, yet the engine caches series and
offset checks per zone. Every answer is compared with dateutil's own, instant for instant,
including across DST transitions (where dateutil's zones read a wall time in the gap with
the offset *after* it, unlike zoneinfo)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from dateutil import tz
from dateutil.rrule import rrulestr

from nextup.recurrence import Mode, next_due, next_occurrence
from test_recurrence_differential import SPAN_DAYS, Case, check, random_parts

RULES = [
    "FREQ=DAILY",
    "FREQ=HOURLY",
    "FREQ=MINUTELY;INTERVAL=17",
    "FREQ=HOURLY;INTERVAL=5;BYMINUTE=0,30",
    "FREQ=WEEKLY;BYDAY=MO,WE,SU;BYHOUR=2,3;BYMINUTE=30",
    "FREQ=MONTHLY;BYDAY=-1SU;BYHOUR=2;BYMINUTE=15",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
    "FREQ=YEARLY;BYMONTH=3,10;BYDAY=-1SU;BYHOUR=1,2,3",
    "FREQ=DAILY;COUNT=400",
]


@pytest.fixture
def berlin_local(monkeypatch):
    """`tzlocal()` as it is on a machine set to Europe/Berlin (it reads the process's TZ)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield tz.tzlocal()
    monkeypatch.undo()
    time.tzset()


def zones(local) -> list:
    return [
        tz.gettz("Europe/Berlin"),
        tz.gettz("America/New_York"),
        tz.gettz("Australia/Lord_Howe"),
        tz.tzutc(),
        tz.tzoffset("X", 3600),
        tz.tzoffset(None, -(3 * 3600 + 1800)),
        tz.tzstr("EST5EDT"),
        local,
    ]


def walk(rule: str, dtstart: datetime, after: datetime, steps: int) -> None:
    """Step through ``steps`` occurrences with both, comparing instants."""
    reference = rrulestr(rule, dtstart=dtstart)
    ours = theirs = after
    for _ in range(steps):
        expected = reference.after(theirs.astimezone(UTC))
        got = next_occurrence(rule, dtstart, ours)
        if expected is None:
            assert got is None, f"{rule} from {dtstart}: got {got}, dateutil none"
            return
        assert got is not None, f"{rule} from {dtstart}: got None, dateutil {expected}"
        assert got.astimezone(UTC) == expected.astimezone(UTC), f"{rule} from {dtstart}"
        assert got.tzinfo is dtstart.tzinfo
        ours, theirs = got, expected


@pytest.mark.parametrize("rule", RULES)
def test_every_dateutil_zone_kind_across_dst(rule: str, berlin_local) -> None:
    fine = "HOURLY" in rule or "MINUTELY" in rule
    for zone in zones(berlin_local):
        # The weeks around the 2024 spring and autumn changes in Europe and America;
        # dateutil walks from the start at every step, so fine rules start nearby.
        for moment in (datetime(2024, 3, 8), datetime(2024, 3, 29), datetime(2024, 10, 25)):
            start = moment - timedelta(days=3) if fine else datetime(2023, 1, 2)
            start = start.replace(hour=2, minute=30, tzinfo=zone)
            walk(rule, start, moment.replace(tzinfo=UTC), 80 if fine else 12)


def test_random_rules_in_dateutil_zones(berlin_local) -> None:
    rng = random.Random(77)
    kinds = zones(berlin_local)
    compared = 0
    for _ in range(300):
        freq, parts = random_parts(rng)
        rule = ";".join(parts)
        start = datetime(2010, 1, 1, tzinfo=UTC) + timedelta(days=rng.uniform(0, 20 * 365))
        dtstart = start.astimezone(rng.choice(kinds)).replace(microsecond=0)
        after = start + timedelta(days=rng.uniform(0, SPAN_DAYS[freq]))
        compared += check(Case(rule, rule, dtstart, after))
    assert compared >= 200  # most generated rules are valid


def test_next_due_with_dateutil_zones(berlin_local) -> None:
    for zone in zones(berlin_local):
        start = datetime(2024, 3, 25, 9, tzinfo=zone)
        due = datetime(2024, 3, 30, 9, tzinfo=zone)
        done = datetime(2024, 4, 2, 12, tzinfo=zone)
        scheduled = next_due(
            "FREQ=DAILY", series_start=start, due_at=due, completed_at=done, mode=Mode.SCHEDULE
        )
        expected = rrulestr("FREQ=DAILY", dtstart=start).after(done.astimezone(UTC))
        assert scheduled.astimezone(UTC) == expected.astimezone(UTC)
        restarted = next_due(
            "FREQ=DAILY", series_start=start, due_at=due, completed_at=done, mode=Mode.COMPLETION
        )
        expected = rrulestr("FREQ=DAILY", dtstart=done).after(done.astimezone(UTC))
        assert restarted.astimezone(UTC) == expected.astimezone(UTC)


def test_a_zone_built_afresh_each_call_still_answers() -> None:
    # tzoffset(...) instances are shared by dateutil, tzlocal() ones are not: each new
    # instance misses the cache but must give the same answer.
    after = datetime(2024, 6, 1, tzinfo=UTC)
    answers = {
        next_occurrence("FREQ=DAILY", datetime(2024, 1, 1, 8, tzinfo=tz.tzlocal()), after)
        for _ in range(3)
    }
    assert len({a.astimezone(UTC) for a in answers}) == 1
