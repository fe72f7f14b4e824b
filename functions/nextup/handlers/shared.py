"""Steps more than one handler takes: ownership checks, compare-and-set loops, emitting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from nextup import reminders, tasks
from nextup.envelope import CloudEvent, derived_id, make_event
from nextup.errors import Forbidden, NotFound, Unavailable
from nextup.fields import TaskFields
from nextup.reminders import Reminder
from nextup.services import Services
from nextup.tasks import Outcome, Task, Transition

# Compare-and-set retries before the event is handed back to the broker (503).
CAS_ATTEMPTS = 8


def fields_of(data: TaskFields) -> TaskFields:
    """Only the task fields the producer actually set, so an update never blanks the rest."""
    names = set(TaskFields.model_fields) & data.model_fields_set
    return TaskFields.model_validate({name: getattr(data, name) for name in names})


def has_task_fields(data: TaskFields) -> bool:
    return bool(set(TaskFields.model_fields) & data.model_fields_set)


async def _refuse_owner(services: Services, user_id: str, claimed: str, task_id: str) -> None:
    owner = await services.db(services.store.owner_of, claimed)
    if owner is not None and owner != user_id:
        raise Forbidden(f"task {task_id} belongs to another user", field="data.task_id")


async def refuse_squatting(services: Services, user_id: str, task_id: str) -> None:
    """403 for an id shaped like another user's next occurrence (`<their series>@<time>`),
    before anyone can claim it: otherwise one user could squat the ids another user's
    series will need. (`Store.create_task` refuses the id itself if someone owns it.)"""
    root = tasks.series_root(task_id)
    if root is not None:
        await _refuse_owner(services, user_id, root, task_id)
    if tasks.hashed_occurrence(task_id):
        # `<hash of a long series id>@<time>` names no series to check: only schedule-next,
        # creating the occurrence, may claim such an id, and only its owner may use it.
        owner = await services.db(services.store.owner_of, task_id)
        if owner != user_id:
            raise Forbidden(
                f"task {task_id} is an occurrence id that is not yours", field="data.task_id"
            )


async def refuse_foreign(services: Services, user_id: str, task_id: str) -> None:
    """403 when the id, or the series it extends, belongs to another user; the message
    does not say whose it is."""
    await _refuse_owner(services, user_id, task_id, task_id)
    await refuse_squatting(services, user_id, task_id)


async def existing_task(services: Services, user_id: str, task_id: str) -> Task:
    """The user's task, or 403 if it is someone else's, or 404 (retried) if unknown yet."""
    task = await services.db(services.store.get_task, user_id, task_id)
    if task is not None:
        return task
    await refuse_foreign(services, user_id, task_id)
    raise NotFound(
        f"task {task_id} is not known (yet): its created event may still be in flight",
        field="data.task_id",
    )


async def apply(services: Services, task: Task, step: Callable[[Task], Transition]) -> Transition:
    """Apply a transition with compare-and-set, re-reading and re-deciding on every conflict."""
    from nextup.store import Conflict

    store = services.store
    for _ in range(CAS_ATTEMPTS):
        transition = step(task)
        if transition.outcome is not Outcome.APPLIED:
            return transition
        try:
            return Transition(await services.db(store.save_task, transition.task), Outcome.APPLIED)
        except Conflict:
            fresh = await services.db(store.get_task, task.user_id, task.task_id)
            if fresh is None:
                raise NotFound(f"task {task.task_id} vanished", field="data.task_id") from None
            task = fresh
    raise Unavailable(f"task {task.task_id} is changing too fast", field="data.task_id")


async def sync_reminder(services: Services, task: Task) -> Reminder | None:
    """Make the stored reminder match the task (schedule, move or cancel it)."""
    from nextup.store import Conflict

    store = services.store
    for _ in range(CAS_ATTEMPTS):
        current = await services.db(store.get_reminder, task.user_id, task.task_id)
        change = reminders.schedule(task, current)
        if change is None:
            return current
        try:
            return await services.db(store.save_reminder, change)
        except Conflict:
            continue
    raise Unavailable(f"reminder of {task.task_id} is changing too fast", field="data.task_id")


def emitted(
    services: Services,
    type_: str,
    data: BaseModel,
    *,
    cause: CloudEvent,
    purpose: str,
    subject: str | None = None,
    id_: str | None = None,
) -> CloudEvent:
    """An event caused by `cause`, with an id derived from it (unless `id_` says otherwise):
    a redelivery emits the same id."""
    payload: dict[str, Any] = data.model_dump(mode="json")
    return make_event(
        type_,
        services.source,
        payload,
        id_=id_ or derived_id(cause, purpose),
        cause=cause,
        subject=subject,
        partition_key=payload.get("user_id"),
    )


def task_outcome(outcome: Outcome, applied: str) -> str:
    return {Outcome.APPLIED: applied, Outcome.REPLAYED: "replayed", Outcome.NOOP: "noop"}[outcome]
