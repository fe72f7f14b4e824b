"""Steps more than one handler takes: the fields an event set, the reminder a task should
have, the time an event speaks for, the events it emits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from nextup import reminders, tasks
from nextup.contract import Context
from nextup.envelope import CloudEvent, derived_id, event_time, make_event
from nextup.errors import BadRequest, NotFound
from nextup.fields import MAX_YEAR, MIN_YEAR, TaskFields
from nextup.recurrence import RuleError
from nextup.reminders import Reminder
from nextup.store import reminder_ref, task_ref
from nextup.tasks import Outcome, Task


def fields_of(data: TaskFields) -> TaskFields:
    """Only the task fields the producer actually set, so an update never blanks the rest."""
    names = set(TaskFields.model_fields) & data.model_fields_set
    return TaskFields.model_validate({name: getattr(data, name) for name in names})


def has_task_fields(data: TaskFields) -> bool:
    return bool(set(TaskFields.model_fields) & data.model_fields_set)


def task_refs(user_id: str, task_id: str) -> list:
    """What most events read: the task and its reminder."""
    return [task_ref(user_id, task_id), reminder_ref(user_id, task_id)]


def sent_at(ctx: Context) -> datetime:
    """When the producer says it sent the event (its `time`), else when it arrived.

    Refused with a 400 naming `time` when outside the years a task may have: a time the
    handler would store (a completion) must be checked before anything is stored."""
    at = event_time(ctx.event)
    if at is None:
        return ctx.now
    if not MIN_YEAR <= at.year <= MAX_YEAR:
        raise BadRequest(
            f"CloudEvent attribute 'time' must be between the years {MIN_YEAR} and {MAX_YEAR}",
            field="time",
        )
    return at


def checked(task: Task) -> Task:
    """`tasks.check_series` with its refusal as the 400 it is, naming the rule."""
    try:
        return tasks.check_series(task)
    except RuleError as exc:
        raise BadRequest(f"data.recurrence.rule: {exc}", field="data.recurrence.rule") from None


def not_known(task_id: str) -> NotFound:
    return NotFound(
        f"task {task_id} is not known (yet): its created event may still be in flight",
        field="data.task_id",
    )


def with_reminder(task: Task, current: Reminder | None) -> tuple[BaseModel, ...]:
    """The task to store, and its reminder where it must change (scheduled, moved or
    cancelled) to match."""
    change = reminders.schedule(task, current)
    return (task,) if change is None else (task, change)


def reminder_after(task: Task, current: Reminder | None) -> Reminder | None:
    """The reminder the task has once `with_reminder`'s changes are stored."""
    return reminders.schedule(task, current) or current


def emitted(
    ctx: Context,
    type_: str,
    data: BaseModel,
    *,
    purpose: str,
    subject: str | None = None,
    id_: str | None = None,
) -> CloudEvent:
    """An event caused by the delivered one, with an id derived from it (unless `id_` says
    otherwise): a redelivery emits the same id."""
    payload: dict[str, Any] = data.model_dump(mode="json")
    return make_event(
        type_,
        ctx.source,
        payload,
        id_=id_ or derived_id(ctx.event, purpose),
        cause=ctx.event,
        subject=subject,
        partition_key=payload.get("user_id"),
        time=ctx.now,
    )


def task_outcome(outcome: Outcome, applied: str) -> str:
    return {
        Outcome.APPLIED: applied,
        Outcome.REPLAYED: "replayed",
        Outcome.NOOP: "noop",
        Outcome.STALE: "stale",
    }[outcome]
