"""complete-task: `todo.task.completed` marks a task done exactly once, cancels its
reminder, and for a recurring task asks for the next occurrence."""

from __future__ import annotations

from nextup import tasks
from nextup.envelope import CloudEvent, event_key, event_time
from nextup.events import OCCURRENCE_REQUESTED, Decoded, TaskCompleted
from nextup.fields import localize
from nextup.handlers.shared import (
    apply,
    emitted,
    existing_task,
    fields_of,
    has_task_fields,
    refuse_squatting,
    sync_reminder,
    task_outcome,
)
from nextup.runtime import Result
from nextup.services import Services
from nextup.tasks import Outcome, Task


async def _task(services: Services, data: TaskCompleted, key: str) -> Task:
    """The task to complete; an event that carries the task's fields may register it."""
    if not has_task_fields(data):
        return await existing_task(services, data.user_id, data.task_id)
    task = await services.db(services.store.get_task, data.user_id, data.task_id)
    if task is None:
        await refuse_squatting(services, data.user_id, data.task_id)
        new = tasks.register(data.user_id, data.task_id, fields_of(data), event_key=key)
        task, _ = await services.db(services.store.create_task, new)
        return task
    if task.status is tasks.TaskStatus.OPEN:
        # The seed's producers send the task as it stands with the completion.
        return (await apply(services, task, lambda t: _updated(t, data, key))).task
    return task


def _updated(task: Task, data: TaskCompleted, key: str) -> tasks.Transition:
    if task.status is not tasks.TaskStatus.OPEN:
        return tasks.Transition(task, Outcome.NOOP)
    changed = tasks.update(task, fields_of(data), event_key=key)
    return tasks.Transition(changed, Outcome.APPLIED if changed != task else Outcome.NOOP)


async def handle(services: Services, event: CloudEvent, decoded: Decoded) -> Result:
    data: TaskCompleted = decoded.data  # type: ignore[assignment]
    key = event_key(event)
    task = await _task(services, data, key)
    completed_at = localize(data.completed_at, task.zone()) or event_time(event) or services.now()
    done, outcome = await apply(
        services, task, lambda t: tasks.complete(t, completed_at=completed_at, event_key=key)
    )
    if outcome is Outcome.NOOP:
        return Result("noop", detail={"task_id": done.task_id, "status": done.status.value})
    await sync_reminder(services, done)
    request = tasks.occurrence_request(done)
    detail = {"task_id": done.task_id, "completed_at": done.completed_at.isoformat()}
    if request is None:
        return Result(task_outcome(outcome, "completed"), detail=detail)
    reply = emitted(
        services,
        OCCURRENCE_REQUESTED,
        request,
        cause=event,
        purpose="occurrence",
        subject=done.task_id,
    )
    return Result(task_outcome(outcome, "completed"), events=(reply,), detail=detail)
