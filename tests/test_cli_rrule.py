"""`nextup rrule explain`, run as a user runs it (a real process), against the engine."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

from nextup.recurrence import explain, next_occurrence

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def rrule(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nextup.cli", "rrule", "explain", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(FUNCTIONS)},
        timeout=60,
    )


def engine(rule: str, start: datetime, count: int) -> list[str]:
    """The first ``count`` occurrences from ``start`` on, by `next_occurrence`."""
    found = []
    at = start - timedelta(seconds=1)
    while len(found) < count:
        at = next_occurrence(rule, start, at)
        found.append(at.isoformat())
    return found


def test_explains_and_lists_occurrences_in_the_zone() -> None:
    done = rrule(
        "every 2nd tuesday at 9:30",
        "--start",
        "2025-01-01T08:00",
        "--tz",
        "Europe/Berlin",
        "--count",
        "4",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "every 2nd Tuesday of the month at 09:30, Europe/Berlin"
    start = datetime(2025, 1, 1, 8, tzinfo=ZoneInfo("Europe/Berlin"))
    assert lines[1:] == engine("every 2nd tuesday at 9:30", start, 4)
    assert lines[1] == "2025-01-14T09:30:00+01:00"


def test_an_aware_start_is_read_in_the_zone() -> None:
    rule = "FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0"
    done = rrule(rule, "--start", "2024-03-29T12:00:00+00:00", "--tz", "Europe/Berlin")
    assert done.returncode == 0, done.stderr
    start = datetime(2024, 3, 29, 13, tzinfo=ZoneInfo("Europe/Berlin"))
    assert done.stdout.splitlines() == [
        explain(rule, start=start, tz="Europe/Berlin"),
        *engine(rule, start, 5),  # across the spring-forward night
    ]


def test_defaults_start_now_in_utc() -> None:
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    done = rrule("hourly")
    after = datetime.now(UTC)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("every hour") and lines[0].endswith(", UTC")
    instants = [datetime.fromisoformat(line) for line in lines[1:]]
    assert len(instants) == 5
    assert all(moment.utcoffset() == timedelta(0) for moment in instants)
    # Started at the current minute: the first is within the hour from now.
    assert before <= instants[0] <= after + timedelta(hours=1)
    assert [b - a for a, b in pairwise(instants)] == [timedelta(hours=1)] * 4


def test_an_unreadable_rule_exits_2_with_the_message() -> None:
    done = rrule("every thrusday")
    assert done.returncode == 2
    assert done.stdout == ""
    assert 'did you mean "every thursday"?' in done.stderr
    done = rrule("FREQ=DAILY;INTERVAL=0")
    assert done.returncode == 2
    assert "INTERVAL must be a positive integer" in done.stderr
