"""Skipping an occurrence and snoozing a reminder, as pure transitions: the series goes on
from a skip in both modes, once; a snooze re-arms a reminder once, and later updates of
the task keep it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import given
from hypothesis import strategies as st

from nextup import reminders, tasks
from nextup.fields import TaskFields
from nextup.reminders import ReminderStatus
from nextup.tasks import Outcome, TaskStatus

BERLIN = ZoneInfo("Europe/Berlin")


def task(rule: str = "FREQ=DAILY", mode: str = "schedule", **more) -> tasks.Task:
    fields = TaskFields.model_validate(
        {
            "title": "Stretch",
            "due_at": "2026-11-30T07:00:00",
            "timezone": "Europe/Berlin",
            "recurrence": {"rule": rule, "mode": mode},
            "reminder": {"before": "PT10M"},
            **more,
        }
    )
    return tasks.register("u1", "t1", fields, event_key="k-created")


def test_a_skip_closes_the_occurrence_as_skipped_not_completed():
    skipped, outcome = tasks.skip(
        task(), skipped_at=datetime(2026, 11, 30, 8, tzinfo=UTC), event_key="k1"
    )
    assert outcome is Outcome.APPLIED
    assert skipped.status is TaskStatus.SKIPPED
    assert skipped.completed_at is None and skipped.completed_by is None
    assert skipped.skipped_by == "k1"


def test_a_skip_is_applied_once_replayed_by_its_own_event_and_a_noop_for_any_other():
    skipped, _ = tasks.skip(
        task(), skipped_at=datetime(2026, 11, 30, 8, tzinfo=UTC), event_key="k1"
    )
    assert (
        tasks.skip(skipped, skipped_at=datetime.now(UTC), event_key="k1").outcome
        is Outcome.REPLAYED
    )
    assert tasks.skip(skipped, skipped_at=datetime.now(UTC), event_key="k2").outcome is Outcome.NOOP
    # Completing what was skipped (or skipping what was completed) changes nothing.
    assert (
        tasks.complete(skipped, completed_at=datetime.now(UTC), event_key="k3").outcome
        is Outcome.NOOP
    )
    done, _ = tasks.complete(task(), completed_at=datetime.now(UTC), event_key="k4")
    assert tasks.skip(done, skipped_at=datetime.now(UTC), event_key="k5").outcome is Outcome.NOOP


@pytest.mark.parametrize(
    ("mode", "skipped_at", "expected"),
    [
        # On schedule: the next occurrence of the series, whenever the skip happened.
        (
            "schedule",
            datetime(2026, 11, 30, 5, tzinfo=UTC),
            datetime(2026, 12, 1, 7, tzinfo=BERLIN),
        ),
        (
            "schedule",
            datetime(2026, 12, 2, 12, tzinfo=UTC),
            datetime(2026, 12, 3, 7, tzinfo=BERLIN),
        ),
        # After completion: the rule restarted when the user skipped.
        (
            "completion",
            datetime(2026, 12, 2, 12, tzinfo=UTC),
            datetime(2026, 12, 3, 13, tzinfo=BERLIN),
        ),
    ],
)
def test_the_next_occurrence_after_a_skip_follows_the_mode(mode, skipped_at, expected):
    skipped, _ = tasks.skip(task(mode=mode), skipped_at=skipped_at, event_key="k1")
    request = tasks.occurrence_request(skipped)
    assert request is not None and request.completed_at == skipped_at
    nxt = tasks.next_occurrence(request, event_key="k-next")
    assert nxt is not None and nxt.due_at == expected
    assert nxt.status is TaskStatus.OPEN and nxt.occurrence == 1
    # The same id whoever asks: one next occurrence however often the skip is delivered.
    again = tasks.next_occurrence(tasks.occurrence_request(skipped), event_key="k-other")
    assert again.task_id == nxt.task_id


def test_a_skipped_one_off_task_asks_for_no_next_occurrence():
    one_off = tasks.register(
        "u1", "t2", TaskFields.model_validate({"due_at": "2026-11-30T07:00:00Z"}), event_key="k"
    )
    skipped, _ = tasks.skip(one_off, skipped_at=datetime.now(UTC), event_key="k1")
    assert tasks.occurrence_request(skipped) is None


@given(
    rule=st.sampled_from(
        [
            "FREQ=DAILY",
            "FREQ=WEEKLY;BYDAY=MO,WE,FR",
            "FREQ=MONTHLY;BYDAY=-1FR",
            "FREQ=MONTHLY;BYMONTHDAY=31",
            "FREQ=HOURLY;INTERVAL=7",
            "FREQ=DAILY;COUNT=3",
        ]
    ),
    count=st.integers(min_value=0, max_value=5),
)
def test_upcoming_lists_what_the_rule_gives_after_the_task(rule, count):
    current = task(rule)
    found = tasks.upcoming(current, count=count)
    start = current.series_start.replace(tzinfo=None)
    after = (dt for dt in rrulestr(rule, dtstart=start) if dt > start)  # after the task's own
    reference = [dt.replace(tzinfo=BERLIN) for dt in itertools.islice(after, count)]
    assert found == reference


def upcoming_step_by_step(current: tasks.Task, count: int) -> list[datetime]:
    """The definition `upcoming` keeps: each next occurrence made as schedule-next makes
    it, from the one before completed when it was due."""
    found: list[datetime] = []
    while len(found) < count:
        done = current.model_copy(
            update={"status": TaskStatus.COMPLETED, "completed_at": current.due_at}
        )
        nxt = tasks.next_occurrence(tasks.occurrence_request(done), event_key="k")
        if nxt is None:
            break
        found.append(nxt.due_at)
        current = nxt
    return found


@given(
    rule=st.sampled_from(
        [
            "FREQ=DAILY",
            "FREQ=DAILY;INTERVAL=3",
            "FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=9,18;BYMINUTE=30",
            "FREQ=MONTHLY;BYDAY=-1FR",
            "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=4",
            "FREQ=HOURLY;INTERVAL=7",
            "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
        ]
    ),
    mode=st.sampled_from(["schedule", "completion"]),
    zone=st.sampled_from([{"timezone": "Europe/Berlin"}, {"timezone": "Pacific/Chatham"}, {}]),
    due=st.sampled_from(
        ["2026-03-28T07:00:00", "2026-10-24T23:30:00+02:00", "2027-01-31T12:00:00Z"]
    ),
    until=st.sampled_from([None, "2026-12-31", "2027-04-01T00:00:00Z"]),
    count=st.integers(min_value=0, max_value=5),
)
def test_upcoming_is_next_occurrence_step_by_step(rule, mode, zone, due, until, count):
    fields = TaskFields.model_validate(
        {
            "title": "Stretch",
            "due_at": due,
            "recurrence": {"rule": rule, "mode": mode, "until": until},
            **zone,
        }
    )
    current = tasks.register("u1", "t1", fields, event_key="k-created")
    assert tasks.upcoming(current, count=count) == upcoming_step_by_step(current, count)


def reminder_of(t: tasks.Task) -> reminders.Reminder:
    made = reminders.schedule(t, None)
    assert made is not None
    return made


def test_a_snooze_moves_the_reminder_and_makes_it_pending_with_a_new_message_id():
    original = reminder_of(task())
    sent = reminders.mark_sent(
        original,
        channel="email",
        message_id=reminders.message_id(original),
        sent_at=original.remind_at,
    ).model_copy(update={"announced": True, "attempts": 1})
    later = original.remind_at + timedelta(minutes=10)
    snoozed = reminders.snooze(sent, until=later, event_key="k-snooze")
    assert snoozed is not None
    assert snoozed.status is ReminderStatus.PENDING and snoozed.remind_at == later
    assert snoozed.attempts == 0 and not snoozed.announced and snoozed.sent_at is None
    assert snoozed.planned_at == original.remind_at
    assert reminders.message_id(snoozed) != reminders.message_id(original)
    assert not snoozed.claimable(later - timedelta(seconds=1))
    assert snoozed.claimable(later)


def test_a_snooze_is_applied_once_and_never_revives_a_cancelled_reminder():
    original = reminder_of(task())
    snoozed = reminders.snooze(
        original, until=original.remind_at + timedelta(hours=1), event_key="k"
    )
    assert reminders.snooze(snoozed, until=original.remind_at, event_key="k") is None
    cancelled = original.model_copy(update={"status": ReminderStatus.CANCELLED})
    assert reminders.snooze(cancelled, until=original.remind_at, event_key="k2") is None
    # A second snooze (another event) moves it again, and remembers the first plan.
    twice = reminders.snooze(snoozed, until=original.remind_at + timedelta(hours=2), event_key="k3")
    assert twice.planned_at == original.remind_at


def test_an_update_that_keeps_the_due_time_keeps_the_snooze_one_that_moves_it_replaces_it():
    current = task()
    snoozed = reminders.snooze(
        reminder_of(current), until=datetime(2026, 11, 30, 9, tzinfo=UTC), event_key="k"
    )
    retitled = tasks.update(
        current, TaskFields.model_validate({"title": "Stretch more"}), event_key="k2"
    )
    assert reminders.schedule(retitled, snoozed) is None
    moved = tasks.update(
        current, TaskFields.model_validate({"due_at": "2026-11-30T08:00:00"}), event_key="k3"
    )
    fresh = reminders.schedule(moved, snoozed)
    assert fresh is not None and fresh.planned_at is None and fresh.snoozed_by is None
    assert fresh.remind_at == datetime(2026, 11, 30, 6, 50, tzinfo=UTC)
