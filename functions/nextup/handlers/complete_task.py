"""complete-task: `todo.task.completed` marks a task done exactly once, cancels its
reminder, and for a recurring task asks for the next occurrence.

One transaction: the task and its reminder are read, the completion decided, and the
completed task, its cancelled reminder and the event's receipt stored together.
"""

from __future__ import annotations

from nextup import tasks
from nextup.contract import Context, Decision, Prepared, Transaction
from nextup.events import OCCURRENCE_REQUESTED, TaskCompleted
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
from nextup.tasks import Outcome, Task, TaskStatus


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


def prepare(ctx: Context) -> Prepared:
    data: TaskCompleted = ctx.data

    def decide(found: list) -> Decision:
        stored: Task | None = found[0]
        reminder: Reminder | None = found[1]
        task = _as_it_stands(ctx, data, stored)
        completed_at = localize(data.completed_at, task.zone()) or sent_at(ctx)
        done, outcome = tasks.complete(task, completed_at=completed_at, event_key=ctx.key)
        if outcome is Outcome.NOOP:
            return Decision("noop", detail={"task_id": done.task_id, "status": done.status.value})
        detail = {"task_id": done.task_id, "completed_at": done.completed_at.isoformat()}
        changes = with_reminder(done, reminder) if outcome is Outcome.APPLIED else ()
        request = tasks.occurrence_request(done)
        events = ()
        if request is not None:
            events = (
                emitted(
                    ctx, OCCURRENCE_REQUESTED, request, purpose="occurrence", subject=done.task_id
                ),
            )
        return Decision(
            task_outcome(outcome, "completed"), changes=changes, events=events, detail=detail
        )

    return Prepared(task_refs(data.user_id, data.task_id), decide)


handle = Transaction(prepare)
