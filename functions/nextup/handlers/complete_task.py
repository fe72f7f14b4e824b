"""complete-task: closes an occurrence exactly once. `todo.task.completed` marks a task
done, `todo.occurrence.skipped` marks an occurrence of a series skipped; either cancels
the task's reminder and, for a recurring task, asks for the next occurrence.

One transaction: the task and its reminder are read, the closing decided, and the closed
task, its cancelled reminder and the event's receipt stored together.
"""

from __future__ import annotations

from nextup import tasks
from nextup.contract import Context, Decision, Prepared, Transaction
from nextup.errors import BadRequest
from nextup.events import OCCURRENCE_REQUESTED, OccurrenceSkipped, TaskCompleted
from nextup.fields import localize
from nextup.handlers.shared import (
    checked,
    emitted,
    fields_of,
    has_task_fields,
    not_known,
    sent_at,
    task_outcome,
    task_refs,
    with_reminder,
)
from nextup.reminders import Reminder
from nextup.tasks import Outcome, Task, TaskStatus, Transition


def _as_it_stands(ctx: Context, data: TaskCompleted, task: Task | None) -> Task:
    """The task to complete. The seed's producers send the task as it stands with the
    completion: an unknown task is registered from those fields, an open one updated."""
    at = sent_at(ctx)
    if task is None:
        if not has_task_fields(data):
            raise not_known(data.task_id)
        return checked(
            tasks.register(data.user_id, data.task_id, fields_of(data), event_key=ctx.key, at=at)
        )
    if (
        task.status is TaskStatus.OPEN
        and has_task_fields(data)
        and not tasks.is_older(task, at=at, event_key=ctx.key)
    ):
        return checked(tasks.update(task, fields_of(data), event_key=ctx.key, at=at))
    return task


def _closed(ctx: Context, transition: Transition, reminder: Reminder | None, word: str) -> Decision:
    """A completion or a skip: the closed task, its reminder cancelled, and for a recurring
    task the request for its next occurrence (one id per event, so one next occurrence)."""
    closed, outcome = transition
    if outcome is Outcome.NOOP:
        return Decision("noop", detail={"task_id": closed.task_id, "status": closed.status.value})
    at = closed.completed_at if closed.status is TaskStatus.COMPLETED else closed.skipped_at
    detail = {"task_id": closed.task_id, f"{word}_at": at.isoformat() if at else None}
    changes = with_reminder(closed, reminder) if outcome is Outcome.APPLIED else ()
    request = tasks.occurrence_request(closed)
    events = ()
    if request is not None:
        events = (
            emitted(
                ctx, OCCURRENCE_REQUESTED, request, purpose="occurrence", subject=closed.task_id
            ),
        )
    return Decision(task_outcome(outcome, word), changes=changes, events=events, detail=detail)


def _complete(ctx: Context) -> Prepared:
    data: TaskCompleted = ctx.data

    def decide(found: list) -> Decision:
        task = _as_it_stands(ctx, data, found[0])
        completed_at = localize(data.completed_at, task.zone()) or sent_at(ctx)
        transition = tasks.complete(task, completed_at=completed_at, event_key=ctx.key)
        return _closed(ctx, transition, found[1], "completed")

    return Prepared(task_refs(data.user_id, data.task_id), decide)


def _skip(ctx: Context) -> Prepared:
    data: OccurrenceSkipped = ctx.data

    def decide(found: list) -> Decision:
        task: Task | None = found[0]
        if task is None:
            raise not_known(data.task_id)
        if not task.is_recurring:
            raise BadRequest(
                f"task {data.task_id} does not recur: there is no next occurrence to skip to "
                "(complete or delete it instead)",
                field="data.task_id",
            )
        skipped_at = localize(data.skipped_at, task.zone()) or sent_at(ctx)
        transition = tasks.skip(task, skipped_at=skipped_at, event_key=ctx.key)
        return _closed(ctx, transition, found[1], "skipped")

    return Prepared(task_refs(data.user_id, data.task_id), decide)


handle = Transaction(_complete)
skip = Transaction(_skip)
