"""Task state transitions and the series' next occurrence: pure functions, no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nextup import reminders, tasks
from nextup.fields import Mode, RecurrenceSpec, ReminderSpec, TaskFields
from nextup.reminders import ReminderStatus
from nextup.tasks import Outcome, TaskStatus

BERLIN = ZoneInfo("Europe/Berlin")


def fields(**values) -> TaskFields:
    return TaskFields.model_validate(values)


def weekly_task(**overrides) -> tasks.Task:
    base = fields(
        title="Water the plants",
        due_at="2026-11-23T09:00:00+01:00",  # a Monday
        timezone="Europe/Berlin",
        recurrence={"rule": "FREQ=WEEKLY;BYDAY=MO,TH"},
        reminder={"before": "PT15M"},
    )
    task = tasks.register("u1", "t1", base, event_key="k-created")
    return task.model_copy(update=overrides)


def test_register_starts_a_series_at_its_due_time():
    task = weekly_task()
    assert task.status is TaskStatus.OPEN
    assert task.series_id == "t1"
    assert task.series_start == task.due_at
    assert task.created_by == "k-created"


def test_naive_due_time_is_read_in_the_task_zone_else_utc():
    berlin = tasks.register(
        "u1", "t1", fields(due_at="2026-07-01T09:00:00", timezone="Europe/Berlin"), event_key="k"
    )
    assert berlin.due_at == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
    plain = tasks.register("u1", "t2", fields(due_at="2026-07-01T09:00:00"), event_key="k")
    assert plain.due_at == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def test_update_applies_only_the_fields_sent():
    task = weekly_task()
    changed = tasks.update(task, fields(title="Water the cactus"), event_key="k-upd")
    assert changed.title == "Water the cactus"
    assert changed.due_at == task.due_at
    assert changed.recurrence == task.recurrence
    assert changed.updated_by == "k-upd"


def test_moving_the_first_occurrence_moves_the_series_start():
    task = weekly_task()
    moved = tasks.update(task, fields(due_at="2026-11-24T10:00:00+01:00"), event_key="k")
    assert moved.series_start == moved.due_at


def test_complete_once_then_replay_then_noop():
    task = weekly_task()
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    done, outcome = tasks.complete(task, completed_at=at, event_key="k1")
    assert outcome is Outcome.APPLIED
    assert done.status is TaskStatus.COMPLETED and done.completed_at == at
    assert tasks.complete(done, completed_at=at + timedelta(hours=1), event_key="k1") == (
        done,
        Outcome.REPLAYED,
    )
    assert tasks.complete(done, completed_at=at, event_key="k2") == (done, Outcome.NOOP)


def test_deleted_task_cannot_be_completed():
    gone, outcome = tasks.delete(weekly_task(), event_key="kd")
    assert outcome is Outcome.APPLIED and gone.status is TaskStatus.DELETED
    assert (
        tasks.complete(gone, completed_at=datetime.now(UTC), event_key="kc").outcome is Outcome.NOOP
    )
    assert tasks.delete(gone, event_key="kd").outcome is Outcome.REPLAYED


def test_next_task_id_is_deterministic_and_bounded():
    due = datetime(2026, 11, 26, 9, 0, tzinfo=BERLIN)
    assert tasks.next_task_id("t1", due) == "t1@20261126T080000Z"
    long_id = "x" * 128
    derived = tasks.next_task_id(long_id, due)
    assert len(derived) <= 128
    assert derived == tasks.next_task_id(long_id, due)
    assert derived != tasks.next_task_id("y" * 128, due)


def completed(task: tasks.Task, at: datetime) -> tasks.Task:
    return tasks.complete(task, completed_at=at, event_key="kc").task


def test_schedule_mode_next_occurrence_keeps_wall_clock_and_skips_missed():
    task = weekly_task()
    # Completed on time: next is Thursday 09:00 Berlin.
    request = tasks.occurrence_request(
        completed(task, datetime(2026, 11, 23, 9, 30, tzinfo=BERLIN))
    )
    nxt = tasks.next_occurrence(request, event_key="kr")
    assert nxt.due_at == datetime(2026, 11, 26, 9, 0, tzinfo=BERLIN)
    assert nxt.task_id == "t1@20261126T080000Z"
    assert (nxt.parent_task_id, nxt.series_id, nxt.occurrence) == ("t1", "t1", 1)
    # Completed two weeks late: the missed occurrences are skipped, not piled up.
    late = tasks.occurrence_request(completed(task, datetime(2026, 12, 8, 12, 0, tzinfo=BERLIN)))
    assert tasks.next_occurrence(late, event_key="kr").due_at == datetime(
        2026, 12, 10, 9, 0, tzinfo=BERLIN
    )


def test_wall_clock_survives_dst():
    task = tasks.register(
        "u1",
        "d1",
        fields(
            due_at="2027-03-27T09:00:00+01:00",
            timezone="Europe/Berlin",
            recurrence={"rule": "daily"},
        ),
        event_key="k",
    )
    request = tasks.occurrence_request(completed(task, datetime(2027, 3, 27, 9, 5, tzinfo=BERLIN)))
    nxt = tasks.next_occurrence(request, event_key="kr")
    assert nxt.due_at.astimezone(BERLIN).hour == 9
    assert nxt.due_at.utcoffset() == timedelta(hours=2)


def test_completion_mode_reanchors_at_completion():
    task = weekly_task(recurrence=RecurrenceSpec(rule="every 3 days", mode=Mode.COMPLETION))
    at = datetime(2026, 11, 25, 18, 30, tzinfo=BERLIN)
    nxt = tasks.next_occurrence(tasks.occurrence_request(completed(task, at)), event_key="kr")
    assert nxt.due_at == at + timedelta(days=3)


def test_series_ends_at_until_and_count():
    ending = weekly_task(
        recurrence=RecurrenceSpec(
            rule="FREQ=WEEKLY;BYDAY=MO,TH", until=datetime(2026, 11, 25, tzinfo=UTC)
        )
    )
    request = tasks.occurrence_request(
        completed(ending, datetime(2026, 11, 23, 9, 30, tzinfo=BERLIN))
    )
    assert tasks.next_occurrence(request, event_key="kr") is None
    counted = weekly_task(recurrence=RecurrenceSpec(rule="FREQ=WEEKLY;BYDAY=MO,TH", count=2))
    first = tasks.next_occurrence(
        tasks.occurrence_request(completed(counted, datetime(2026, 11, 23, 9, 30, tzinfo=BERLIN))),
        event_key="k",
    )
    assert first is not None and first.occurrence == 1
    second_request = tasks.occurrence_request(
        completed(first, datetime(2026, 11, 26, 9, 30, tzinfo=BERLIN))
    )
    assert tasks.next_occurrence(second_request, event_key="k") is None


def test_only_completed_recurring_tasks_request_an_occurrence():
    assert tasks.occurrence_request(weekly_task()) is None
    once = weekly_task(recurrence=None)
    assert tasks.occurrence_request(completed(once, datetime.now(UTC))) is None


# Reminders


def test_reminder_is_scheduled_before_the_due_time():
    task = weekly_task()
    reminder = reminders.schedule(task, None)
    assert reminder.remind_at == datetime(2026, 11, 23, 7, 45, tzinfo=UTC)
    assert reminder.status is ReminderStatus.PENDING
    assert reminders.schedule(task, reminder) is None, "nothing to write when nothing changed"


def test_moving_the_task_reschedules_and_completing_cancels():
    task = weekly_task()
    reminder = reminders.schedule(task, None).model_copy(update={"version": 1})
    moved = tasks.update(task, fields(due_at="2026-11-23T11:00:00+01:00"), event_key="k")
    again = reminders.schedule(moved, reminder)
    assert again.remind_at == datetime(2026, 11, 23, 9, 45, tzinfo=UTC)
    assert again.version == 1, "rescheduling keeps the stored version for compare-and-set"
    cancelled = reminders.schedule(completed(task, datetime.now(UTC)), reminder)
    assert cancelled.status is ReminderStatus.CANCELLED


def test_task_without_reminder_or_due_time_has_none():
    assert reminders.schedule(weekly_task(reminder=None), None) is None
    assert reminders.schedule(weekly_task(due_at=None), None) is None


def test_claim_lease_and_message_id():
    reminder = reminders.schedule(weekly_task(reminder=ReminderSpec(before=timedelta(0))), None)
    early = reminder.remind_at - timedelta(seconds=1)
    assert reminders.claim(reminder, owner="a", now=early, lease=timedelta(seconds=30)) is None
    now = reminder.remind_at
    claimed = reminders.claim(reminder, owner="a", now=now, lease=timedelta(seconds=30))
    assert claimed.lease_owner == "a" and claimed.attempts == 1
    assert (
        reminders.claim(
            claimed, owner="b", now=now + timedelta(seconds=10), lease=timedelta(seconds=30)
        )
        is None
    )
    stolen = reminders.claim(
        claimed, owner="b", now=now + timedelta(seconds=31), lease=timedelta(seconds=30)
    )
    assert stolen.lease_owner == "b" and stolen.attempts == 2
    sent = reminders.mark_sent(
        stolen, channel="email", message_id=reminders.message_id(stolen), sent_at=now
    )
    assert (
        reminders.claim(sent, owner="c", now=now + timedelta(days=1), lease=timedelta(seconds=30))
        is None
    )
    assert reminders.message_id(claimed) == reminders.message_id(sent)
    moved = reminder.model_copy(update={"remind_at": reminder.remind_at + timedelta(hours=1)})
    assert reminders.message_id(moved) != reminders.message_id(reminder)


@pytest.mark.parametrize("before", [timedelta(0), timedelta(days=1)])
def test_remind_at_is_utc(before):
    task = weekly_task(reminder=ReminderSpec(before=before))
    assert reminders.remind_at(task).tzinfo is UTC


def test_due_time_is_kept_on_the_task_wall_clock():
    task = tasks.register(
        "u1", "z1", fields(due_at="2026-11-24T08:00:00Z", timezone="Europe/Berlin"), event_key="k"
    )
    assert task.due_at.isoformat() == "2026-11-24T09:00:00+01:00"
