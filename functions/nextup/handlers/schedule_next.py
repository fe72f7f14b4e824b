"""schedule-next: keeps tasks and their reminders in step with the todo app, and creates
each recurring series' next occurrence exactly once. One transaction per event.

- `todo.task.created` registers a task (a second `created` for a task it already holds is
  applied as an update) and schedules its reminder.
- `todo.task.updated` changes an open task and reschedules its reminder; for an unknown
  task it answers 404 so the broker retries while `created` may be in flight. An update
  older than the one applied (by event time) arrived out of order: acknowledged, no change.
- `todo.task.deleted` deletes the task and cancels its reminder; for an unknown task it
  leaves a tombstone, so a `created` that arrives late does not bring it back.
- `todo.reminder.snoozed` moves a task's reminder later (pending again, even if it was
  sent), so it goes out once more at the new time.
- `todo.occurrence.requested` computes the next occurrence, creates it under its
  deterministic id with its reminder, tells the backend (if configured) and emits
  `todo.task.scheduled` (with the due times coming after it).
"""

from __future__ import annotations

from nextup import reminders, tasks
from nextup.contract import Context, Decision, Prepared, Transaction
from nextup.errors import BadRequest
from nextup.events import (
    TASK_SCHEDULED,
    OccurrenceRequested,
    ReminderSnoozed,
    TaskEvent,
    TaskRef,
    TaskScheduled,
)
from nextup.fields import MAX_YEAR, localize
from nextup.handlers.shared import (
    checked,
    emitted,
    fields_of,
    not_known,
    reminder_after,
    sent_at,
    task_outcome,
    task_refs,
    with_reminder,
)
from nextup.recurrence import RuleError
from nextup.reminders import Reminder, ReminderStatus
from nextup.tasks import Outcome, Task, TaskStatus, Transition


def _update(ctx: Context, task: Task, data: TaskEvent) -> Transition:
    if task.status is not TaskStatus.OPEN:
        return Transition(task, Outcome.NOOP)
    if task.updated_by == ctx.key:
        return Transition(task, Outcome.REPLAYED)
    at = sent_at(ctx)
    if tasks.is_older(task, at=at, event_key=ctx.key):
        return Transition(task, Outcome.STALE)
    return Transition(
        tasks.update(task, fields_of(data), event_key=ctx.key, at=at), Outcome.APPLIED
    )


def _detail(task: Task, reminder: Reminder | None) -> dict:
    pending = reminder is not None and reminder.status is ReminderStatus.PENDING
    return {
        "task_id": task.task_id,
        "status": task.status.value,
        "remind_at": reminder.remind_at.isoformat() if pending else None,
    }


def _applied(transition: Transition, reminder: Reminder | None, applied: str) -> Decision:
    task, outcome = transition
    changes = with_reminder(task, reminder) if outcome is Outcome.APPLIED else ()
    return Decision(
        task_outcome(outcome, applied),
        changes=changes,
        detail=_detail(task, reminder_after(task, reminder) if changes else reminder),
    )


def _created(ctx: Context) -> Prepared:
    data: TaskEvent = ctx.data

    def decide(found: list) -> Decision:
        task, reminder = found
        if task is None:
            new = checked(
                tasks.register(
                    data.user_id,
                    data.task_id,
                    fields_of(data),
                    event_key=ctx.key,
                    at=sent_at(ctx),
                    parent_task_id=data.parent_task_id,
                )
            )
            return _applied(Transition(new, Outcome.APPLIED), reminder, "registered")
        if task.created_by == ctx.key:
            return _applied(Transition(task, Outcome.REPLAYED), reminder, "registered")
        return _applied(_update(ctx, task, data), reminder, "updated")

    return Prepared(task_refs(data.user_id, data.task_id), decide)


def _updated(ctx: Context) -> Prepared:
    data: TaskEvent = ctx.data

    def decide(found: list) -> Decision:
        task, reminder = found
        if task is None:
            raise not_known(data.task_id)
        return _applied(_update(ctx, task, data), reminder, "updated")

    return Prepared(task_refs(data.user_id, data.task_id), decide)


def _deleted(ctx: Context) -> Prepared:
    data: TaskRef = ctx.data

    def decide(found: list) -> Decision:
        task, reminder = found
        if task is None:
            # A tombstone, so that a `created` delivered after this does not revive it.
            task = Task(user_id=data.user_id, task_id=data.task_id, series_id=data.task_id)
        return _applied(tasks.delete(task, event_key=ctx.key), reminder, "deleted")

    return Prepared(task_refs(data.user_id, data.task_id), decide)


def _occurrence(ctx: Context) -> Prepared:
    data: OccurrenceRequested = ctx.data
    try:
        nxt = tasks.next_occurrence(data, event_key=ctx.key)
    except RuleError as exc:
        raise BadRequest(f"data.recurrence.rule: {exc}", field="data.recurrence.rule") from None
    if nxt is None:
        return Prepared(
            (), lambda found: Decision("series_ended", detail={"task_id": data.task_id})
        )

    def decide(found: list) -> Decision:
        stored, reminder = found
        task = stored or nxt
        changes = with_reminder(task, reminder) if stored is None else ()
        reminder = reminder_after(task, reminder) if changes else reminder
        scheduled = TaskScheduled(
            user_id=task.user_id,
            task_id=task.task_id,
            parent_task_id=data.task_id,
            series_id=task.series_id,
            occurrence=task.occurrence,
            title=task.title,
            due_at=task.due_at,
            timezone=task.timezone,
            remind_at=reminder.remind_at if reminder else None,
            upcoming=tasks.upcoming(task),
        )
        event = emitted(ctx, TASK_SCHEDULED, scheduled, purpose="scheduled", subject=task.task_id)
        return Decision(
            "scheduled" if stored is None else "replayed",
            changes=changes,
            events=(event,),
            detail={"task_id": task.task_id},
            before_commit=_tell_backend(task) if stored is None else None,
        )

    return Prepared(task_refs(nxt.user_id, nxt.task_id), decide)


def _snoozed(ctx: Context) -> Prepared:
    data: ReminderSnoozed = ctx.data

    def decide(found: list) -> Decision:
        task, reminder = found
        if task is None:
            raise not_known(data.task_id)
        if task.status is not TaskStatus.OPEN:
            return Decision("noop", detail={"task_id": task.task_id, "status": task.status.value})
        if reminder is None:
            raise BadRequest(
                f"task {data.task_id} has no reminder to snooze (give it a `reminder` first)",
                field="data.task_id",
            )
        until = localize(data.until, task.zone()) or sent_at(ctx) + data.for_
        if until.year > MAX_YEAR:  # only `for` can reach past it: `until` is bounded by its type
            raise BadRequest(f"a reminder cannot go out after {MAX_YEAR}", field="data.for")
        moved = reminders.snooze(reminder, until=until, event_key=ctx.key)
        if moved is None:
            return Decision("noop", detail=_detail(task, reminder))
        return Decision("snoozed", changes=(moved,), detail=_detail(task, moved))

    return Prepared(task_refs(data.user_id, data.task_id), decide)


def _tell_backend(task: Task):
    """The todo app's API hears of the new occurrence before it is stored here, under an
    idempotency key: a crash in between repeats the call, never loses it."""

    async def call(services) -> None:
        await services.backend_create_task(
            {
                "task_id": task.task_id,
                "user_id": task.user_id,
                "title": task.title,
                "due_at": task.due_at.isoformat(),
                "next_occurrence": task.due_at.isoformat(),
                "recurring_pattern": task.recurrence.rule if task.recurrence else None,
                "parent_task_id": task.parent_task_id,
            },
            idempotency_key=f"{task.user_id}:{task.task_id}",
        )

    return call


created = Transaction(_created)
updated = Transaction(_updated)
deleted = Transaction(_deleted)
occurrence = Transaction(_occurrence)
snoozed = Transaction(_snoozed)
