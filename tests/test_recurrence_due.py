"""`next_due`: the schedule and completion modes, with until, count and index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nextup.recurrence import Mode, RuleError, next_due

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2024, 1, 1, 9, tzinfo=BERLIN)


def due(rule: str, *, due_at: datetime, completed_at: datetime, mode=Mode.SCHEDULE, **extra):
    return next_due(
        rule, series_start=MONDAY, due_at=due_at, completed_at=completed_at, mode=mode, **extra
    )


def at(day: int, hour: int = 9, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=BERLIN)


def test_schedule_next_after_due_date_when_done_early() -> None:
    assert due("weekly", due_at=at(8), completed_at=at(5, 17)) == at(15)


def test_schedule_skips_missed_occurrences() -> None:
    # Done three weeks late: the next task is the next Monday after the completion,
    # not the three Mondays missed in between.
    assert due("weekly", due_at=at(8), completed_at=at(25, 12)) == at(29)
    assert due("FREQ=DAILY", due_at=at(8), completed_at=at(20, 8)) == at(20)
    assert due("FREQ=DAILY", due_at=at(8), completed_at=at(20, 9)) == at(21)


def test_schedule_count_counts_from_series_start() -> None:
    # Mondays 1, 8, 15 January: the series has 3 occurrences.
    assert due("weekly", due_at=at(8), completed_at=at(8), count=3) == at(15)
    assert due("weekly", due_at=at(15), completed_at=at(15), count=3) is None
    # The rule's own COUNT and the argument: the smaller wins.
    assert due("FREQ=WEEKLY;COUNT=2", due_at=at(1), completed_at=at(1), count=5) == at(8)
    assert due("FREQ=WEEKLY;COUNT=2", due_at=at(8), completed_at=at(8), count=5) is None
    assert due("FREQ=WEEKLY;COUNT=9", due_at=at(8), completed_at=at(8), count=2) is None


def test_until_is_inclusive_and_the_earlier_end_wins() -> None:
    assert due("weekly", due_at=at(8), completed_at=at(8), until=at(15)) == at(15)
    assert (
        due("weekly", due_at=at(8), completed_at=at(8), until=at(15) - timedelta(seconds=1)) is None
    )
    assert due("FREQ=WEEKLY;UNTIL=20240110", due_at=at(1), completed_at=at(1), until=at(31)) == at(
        8
    )
    assert due("FREQ=WEEKLY;UNTIL=20240110", due_at=at(8), completed_at=at(8), until=at(31)) is None
    completion = Mode.COMPLETION
    assert due(
        "daily", due_at=at(8), completed_at=at(9, 7), mode=completion, until=at(10, 7)
    ) == at(10, 7)
    assert (
        due("daily", due_at=at(8), completed_at=at(9, 7), mode=completion, until=at(10, 6)) is None
    )


def test_completion_restarts_at_completion() -> None:
    completed = datetime(2024, 3, 5, 13, 32, 10, 500_000, tzinfo=UTC)
    got = due("daily", due_at=at(1), completed_at=completed, mode=Mode.COMPLETION)
    # 24 hours of wall clock later, in the series' zone, microseconds dropped.
    assert got == datetime(2024, 3, 6, 14, 32, 10, tzinfo=BERLIN)
    assert got.tzinfo is BERLIN
    got = due("every 3 days", due_at=at(1), completed_at=completed, mode="completion")
    assert got == datetime(2024, 3, 8, 14, 32, 10, tzinfo=BERLIN)
    # With BYDAY the weekday comes from the rule and the time from the completion.
    got = due("FREQ=WEEKLY;BYDAY=MO", due_at=at(1), completed_at=completed, mode=Mode.COMPLETION)
    assert got == datetime(2024, 3, 11, 14, 32, 10, tzinfo=BERLIN)


def test_completion_count_caps_the_number_of_tasks() -> None:
    completed = at(3, 18)
    assert due(
        "daily", due_at=at(3), completed_at=completed, mode="completion", count=3, index=1
    ) == at(4, 18)
    assert (
        due("daily", due_at=at(3), completed_at=completed, mode="completion", count=3, index=2)
        is None
    )
    # The rule's COUNT caps the tasks too (re-anchored, it would never run out).
    assert (
        due("FREQ=DAILY;COUNT=2", due_at=at(3), completed_at=completed, mode="completion", index=1)
        is None
    )
    assert due("FREQ=DAILY;COUNT=2", due_at=at(3), completed_at=completed, mode="completion") == at(
        4, 18
    )


def test_mode_strings_and_other_enums() -> None:
    from enum import StrEnum

    class OtherMode(StrEnum):
        SCHEDULE = "schedule"

    assert due("weekly", due_at=at(8), completed_at=at(8), mode="schedule") == at(15)
    assert due("weekly", due_at=at(8), completed_at=at(8), mode=OtherMode.SCHEDULE) == at(15)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"mode": "sometimes"}, "mode"),
        ({"completed_at": datetime(2024, 1, 8, 9)}, "completed_at"),
        ({"due_at": datetime(2024, 1, 8, 9)}, "due_at"),
        ({"until": datetime(2024, 2, 1)}, "until"),
        ({"count": 0}, "count"),
        ({"index": -1}, "index"),
    ],
)
def test_bad_arguments(extra: dict, field: str) -> None:
    arguments = {"due_at": at(8), "completed_at": at(8), "mode": Mode.SCHEDULE} | extra
    with pytest.raises(RuleError) as caught:
        next_due("weekly", series_start=MONDAY, **arguments)
    assert caught.value.field == field


def test_naive_series_start() -> None:
    with pytest.raises(RuleError) as caught:
        next_due(
            "weekly",
            series_start=datetime(2024, 1, 1),
            due_at=at(8),
            completed_at=at(8),
            mode="schedule",
        )
    assert caught.value.field == "series_start"


def test_invalid_rule() -> None:
    with pytest.raises(RuleError, match="INTERVAL must be a positive integer"):
        due("FREQ=DAILY;INTERVAL=0", due_at=at(8), completed_at=at(8))


@pytest.mark.parametrize("function", ["complete-task", "send-reminder", "health"])
def test_functions_that_compute_no_occurrence_do_not_import_the_engine(function):
    """The engine is imported on first use (cold start): loading a function that never
    computes an occurrence leaves it out; schedule-next's first occurrence brings it in."""
    import subprocess
    import sys
    from pathlib import Path

    main = Path(__file__).resolve().parents[1] / "functions" / function / "main.py"
    probe = (
        "import runpy, sys; "
        f"runpy.run_path({str(main)!r}); "
        "print(sorted(m for m in sys.modules if m.startswith('nextup.recurrence.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['nextup.recurrence.errors', 'nextup.recurrence.mode']"
    # ...and the names are all there when asked for.
    import nextup.recurrence as recurrence

    assert callable(recurrence.next_occurrence) and callable(recurrence.parse_rule)
    with pytest.raises(AttributeError):
        recurrence.no_such_name  # noqa: B018


def test_completing_a_stored_recurring_task_leaves_the_engine_out(tmp_path, monkeypatch):
    """A stored rule is read back as written (an RRULE, checked when it was stored): the
    first completion of a task given as a phrase neither translates nor parses its rule,
    so complete-task's first event does not pay for importing the engine."""
    from harness import first_completion
    from nextup.fields import RecurrenceSpec
    from nextup.store import open_store
    from nextup.tasks import Task
    from nextup_dev.stores import SQLITE, store_url

    url = store_url(SQLITE, tmp_path / "state")
    due = datetime(2026, 11, 24, 8, tzinfo=UTC)
    spec = RecurrenceSpec.model_validate({"rule": "every day at 9am"})
    with open_store(url) as store:
        store.create_task(
            Task(
                user_id="u",
                task_id="t1",
                series_id="t1",
                title="plant",
                due_at=due,
                timezone="Europe/Berlin",
                recurrence=spec,
            )
        )
    monkeypatch.setenv("NEXTUP_STORE_URL", url)
    answer = first_completion(due)
    assert answer["status"] == 200
    assert answer["type"] == "todo.occurrence.requested"
    engine = [m for m in answer["modules"] if m.startswith("nextup.recurrence.")]
    assert engine == ["nextup.recurrence.errors", "nextup.recurrence.mode"]
