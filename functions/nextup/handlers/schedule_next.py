"""schedule-next: keeps tasks and their reminders in step with the todo app, and creates
each recurring series' next occurrence exactly once.

- `todo.task.created` registers a task (put-if-absent; a second `created` for a task we
  already hold is applied as an update) and schedules its reminder.
- `todo.task.updated` changes an open task and reschedules its reminder; for an unknown
  task it answers 404 so the broker retries while `created` may be in flight.
- `todo.task.deleted` deletes the task and cancels its reminder; for an unknown task it
  leaves a tombstone, so a `created` that arrives late does not bring it back.
- `todo.occurrence.requested` computes the next occurrence, creates it under its
  deterministic id, schedules its reminder, tells the backend (if configured) and emits
  `todo.task.scheduled`.
"""

from __future__ import annotations

from nextup import tasks
from nextup.envelope import CloudEvent, event_key
from nextup.errors import BadRequest
from nextup.events import (
    OCCURRENCE_REQUESTED,
    TASK_CREATED,
    TASK_DELETED,
    TASK_SCHEDULED,
    TASK_UPDATED,
    Decoded,
    OccurrenceRequested,
    TaskEvent,
    TaskRef,
    TaskScheduled,
)
from nextup.handlers.shared import (
    apply,
    emitted,
    existing_task,
    fields_of,
    refuse_foreign,
    refuse_squatting,
    sync_reminder,
    task_outcome,
)
from nextup.recurrence import RuleError
from nextup.runtime import Result
from nextup.services import Services
from nextup.tasks import Outcome, Task, TaskStatus, Transition


def _update_step(data: TaskEvent, key: str):
    def step(task: Task) -> Transition:
        if task.status is not TaskStatus.OPEN:
            return Transition(task, Outcome.NOOP)
        if task.updated_by == key:
            return Transition(task, Outcome.REPLAYED)
        return Transition(tasks.update(task, fields_of(data), event_key=key), Outcome.APPLIED)

    return step


def _detail(task: Task, reminder) -> dict:
    return {
        "task_id": task.task_id,
        "status": task.status.value,
        "remind_at": reminder.remind_at.isoformat()
        if reminder and reminder.status == "pending"
        else None,
    }


async def created(services: Services, data: TaskEvent, key: str) -> Result:
    await refuse_squatting(services, data.user_id, data.task_id)
    new = tasks.register(
        data.user_id,
        data.task_id,
        fields_of(data),
        event_key=key,
        parent_task_id=data.parent_task_id,
    )
    task, was_created = await services.db(services.store.create_task, new)
    outcome = "registered"
    if not was_created:
        if task.created_by == key:
            outcome = "replayed"
        else:
            task, applied = await apply(services, task, _update_step(data, key))
            outcome = task_outcome(applied, "updated")
    reminder = await sync_reminder(services, task)
    return Result(outcome, detail=_detail(task, reminder))


async def updated(services: Services, data: TaskEvent, key: str) -> Result:
    task = await existing_task(services, data.user_id, data.task_id)
    task, applied = await apply(services, task, _update_step(data, key))
    reminder = await sync_reminder(services, task)
    return Result(task_outcome(applied, "updated"), detail=_detail(task, reminder))


async def deleted(services: Services, data: TaskRef, key: str) -> Result:
    store = services.store
    task = await services.db(store.get_task, data.user_id, data.task_id)
    if task is None:
        await refuse_foreign(services, data.user_id, data.task_id)
        tombstone = Task(
            user_id=data.user_id,
            task_id=data.task_id,
            series_id=data.task_id,
            status=TaskStatus.DELETED,
            deleted_by=key,
        )
        task, _ = await services.db(store.create_task, tombstone)
    task, applied = await apply(services, task, lambda t: tasks.delete(t, event_key=key))
    reminder = await sync_reminder(services, task)
    return Result(task_outcome(applied, "deleted"), detail=_detail(task, reminder))


async def occurrence(
    services: Services, event: CloudEvent, data: OccurrenceRequested, key: str
) -> Result:
    await refuse_foreign(services, data.user_id, data.task_id)
    await refuse_foreign(services, data.user_id, data.series_id)
    try:
        nxt = tasks.next_occurrence(data, event_key=key)
    except RuleError as exc:
        raise BadRequest(f"data.recurrence.rule: {exc}", field="data.recurrence.rule") from None
    if nxt is None:
        return Result("series_ended", detail={"task_id": data.task_id})
    task, was_created = await services.db(services.store.create_task, nxt)
    reminder = await sync_reminder(services, task)
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
    )
    reply = emitted(
        services, TASK_SCHEDULED, scheduled, cause=event, purpose="scheduled", subject=task.task_id
    )
    return Result(
        "scheduled" if was_created else "replayed",
        events=(reply,),
        detail={"task_id": task.task_id},
    )


async def handle(services: Services, event: CloudEvent, decoded: Decoded) -> Result:
    key = event_key(event)
    if decoded.type == TASK_CREATED:
        return await created(services, decoded.data, key)  # type: ignore[arg-type]
    if decoded.type == TASK_UPDATED:
        return await updated(services, decoded.data, key)  # type: ignore[arg-type]
    if decoded.type == TASK_DELETED:
        return await deleted(services, decoded.data, key)  # type: ignore[arg-type]
    if decoded.type == OCCURRENCE_REQUESTED:
        return await occurrence(services, event, decoded.data, key)  # type: ignore[arg-type]
    raise BadRequest(f"schedule-next does not handle {decoded.type}", field="type")
