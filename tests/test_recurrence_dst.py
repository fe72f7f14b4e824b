"""Daylight saving time: series keep their wall-clock time (as python-dateutil does); a wall
time in a gap reads with the offset before the gap and comes back as the real instant, an
ambiguous one as its first occurrence (RFC 5545 3.3.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr

from nextup.recurrence import next_occurrence

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
APIA = ZoneInfo("Pacific/Apia")


def instant(value: datetime | None) -> datetime | None:
    # `==` between zones is always False for a wall time in a repeated hour (PEP 495):
    # compare instants.
    return None if value is None else value.astimezone(UTC)


def both(rule: str, dtstart: datetime, after: datetime) -> datetime | None:
    """Ours, checked against dateutil's instant."""
    got = next_occurrence(rule, dtstart, after)
    expected = rrulestr(rule, dtstart=dtstart).after(after.astimezone(UTC))
    assert (got is None) == (expected is None)
    if got is not None:
        assert got.astimezone(UTC) == expected.astimezone(UTC)
        assert got.tzinfo is dtstart.tzinfo
    return got


@pytest.mark.parametrize(
    ("zone", "day", "expected_utc"),
    [
        (BERLIN, datetime(2024, 3, 31), datetime(2024, 3, 31, 1, 30, tzinfo=UTC)),
        (NEW_YORK, datetime(2024, 3, 10), datetime(2024, 3, 10, 7, 30, tzinfo=UTC)),
    ],
)
def test_daily_0230_across_spring_forward(zone, day: datetime, expected_utc: datetime) -> None:
    start = datetime(2015, 1, 1, 2, 30, tzinfo=zone)
    before = (day - timedelta(hours=12)).replace(tzinfo=zone)
    got = both("FREQ=DAILY", start, before)
    # 02:30 does not exist that night: read with the winter offset, it is 03:30 summer time.
    assert instant(got) == expected_utc
    assert (got.hour, got.minute) == (3, 30)
    assert got.utcoffset() == expected_utc.astimezone(zone).utcoffset()
    # The day after, the series is back at 02:30.
    following = both("FREQ=DAILY", start, got)
    assert following.replace(tzinfo=None) == day + timedelta(days=1, hours=2, minutes=30)


def test_daily_0230_on_fall_back_is_the_first_one() -> None:
    start = datetime(2015, 1, 1, 2, 30, tzinfo=BERLIN)
    got = both("FREQ=DAILY", start, datetime(2024, 10, 26, 12, tzinfo=UTC))
    assert instant(got) == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # 02:30 CEST, not CET
    assert got.fold == 0 and got.utcoffset() == timedelta(hours=2)
    # Right after it, the next one is the next day's, not the repeated 02:30.
    assert both("FREQ=DAILY", start, got) == datetime(2024, 10, 28, 2, 30, tzinfo=BERLIN)
    # An `after` in the repeated hour (fold=1) is later than the series' 02:30.
    repeated = datetime(2024, 10, 27, 2, 15, fold=1, tzinfo=BERLIN)
    assert both("FREQ=DAILY", start, repeated) == datetime(2024, 10, 28, 2, 30, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("zone", "after", "expected_utc"),
    [
        # Wall-clock hours: 02:00 is generated once (summer time), then 03:00 winter time.
        (BERLIN, datetime(2024, 10, 27, 0, 30, tzinfo=UTC), datetime(2024, 10, 27, 2, tzinfo=UTC)),
        (BERLIN, datetime(2024, 10, 26, 23, 30, tzinfo=UTC), datetime(2024, 10, 27, 0, tzinfo=UTC)),
        (NEW_YORK, datetime(2024, 11, 3, 5, 30, tzinfo=UTC), datetime(2024, 11, 3, 7, tzinfo=UTC)),
    ],
)
def test_hourly_across_fall_back(zone, after: datetime, expected_utc: datetime) -> None:
    start = datetime(2024, 8, 1, tzinfo=zone)
    assert instant(both("FREQ=HOURLY", start, after)) == expected_utc
    assert instant(both("FREQ=HOURLY;COUNT=100000", start, after)) == expected_utc


def test_hourly_across_spring_forward() -> None:
    start = datetime(2024, 2, 1, tzinfo=NEW_YORK)
    after = datetime(2024, 3, 10, 6, 30, tzinfo=UTC)  # 01:30 EST
    # 02:00 is in the gap: read as 02:00 EST = 03:00 EDT; 03:00 EDT is the same instant.
    assert both("FREQ=HOURLY", start, after) == datetime(2024, 3, 10, 7, tzinfo=UTC)
    assert both("FREQ=HOURLY", start, datetime(2024, 3, 10, 7, tzinfo=UTC)) == datetime(
        2024, 3, 10, 8, tzinfo=UTC
    )


def test_gap_walls_after_a_later_wall() -> None:
    # Every 15 minutes in New York on 2024-03-10: 02:30 (a gap wall) reads as 07:30 UTC,
    # later than the 03:15 EDT (07:15 UTC) that follows it in wall-clock order. dateutil
    # takes the first wall-clock occurrence after the instant, so 07:20 UTC gives 02:30.
    start = datetime(2024, 3, 1, tzinfo=NEW_YORK)
    after = datetime(2024, 3, 10, 7, 20, tzinfo=UTC)
    assert both("FREQ=MINUTELY;INTERVAL=15", start, after) == datetime(
        2024, 3, 10, 7, 30, tzinfo=UTC
    )
    assert both("FREQ=MINUTELY;INTERVAL=15;COUNT=5000", start, after) == datetime(
        2024, 3, 10, 7, 30, tzinfo=UTC
    )


def test_lord_howe_half_hour_shift() -> None:
    start = datetime(2020, 1, 1, 2, 15, tzinfo=LORD_HOWE)
    got = both("FREQ=DAILY", start, datetime(2024, 10, 5, tzinfo=UTC))
    # Clocks go from 02:00 to 02:30: 02:15 reads as 02:45 daylight time.
    assert (got.day, got.hour, got.minute) == (6, 2, 45)
    assert got.utcoffset() == timedelta(hours=11)


def test_apia_skipped_day() -> None:
    # Samoa skipped 30 December 2011; its 09:00 reads with the old offset (-10:00).
    start = datetime(2011, 12, 1, 9, tzinfo=APIA)
    got = both("FREQ=DAILY", start, datetime(2011, 12, 29, 12, tzinfo=APIA))
    assert instant(got) == datetime(2011, 12, 30, 19, tzinfo=UTC)
    assert both("FREQ=DAILY", start, got) == datetime(2012, 1, 1, 9, tzinfo=APIA)


def test_after_in_another_zone_and_strictly_after() -> None:
    start = datetime(2020, 1, 6, 9, tzinfo=BERLIN)
    at = datetime(2024, 1, 8, 9, tzinfo=BERLIN)  # an occurrence itself
    assert both("FREQ=WEEKLY", start, at) == datetime(2024, 1, 15, 9, tzinfo=BERLIN)
    assert both("FREQ=WEEKLY", start, at.astimezone(NEW_YORK)) == datetime(
        2024, 1, 15, 9, tzinfo=BERLIN
    )
    assert both("FREQ=WEEKLY", start, at - timedelta(microseconds=1)) == at
