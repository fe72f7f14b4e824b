"""The four functions: what each consumes and emits, its handler and its dependencies.

`functions/<name>/main.py` binds one of these to functions-framework; the eventing
manifests and the local runtime read the same declarations. Handlers are named, not
imported, so a function's cold start never loads the other three's code.
"""

from __future__ import annotations

from dataclasses import replace

from nextup.events import (
    HEALTH_PROBE,
    HEALTH_REPORTED,
    OCCURRENCE_REQUESTED,
    PING,
    REMINDER_DUE,
    REMINDER_SENT,
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_DELETED,
    TASK_SCHEDULED,
    TASK_UPDATED,
)
from nextup.runtime import Function

COMPLETE_TASK = Function(
    name="complete-task",
    consumes=frozenset({TASK_COMPLETED}),
    emits=frozenset({OCCURRENCE_REQUESTED}),
    handler="nextup.handlers.complete_task:handle",
    dependencies=("store",),
    dapr_topic="task-events",
)
SCHEDULE_NEXT = Function(
    name="schedule-next",
    consumes=frozenset({TASK_CREATED, TASK_UPDATED, TASK_DELETED, OCCURRENCE_REQUESTED}),
    emits=frozenset({TASK_SCHEDULED}),
    handler="nextup.handlers.schedule_next:handle",
    dependencies=("store", "backend"),
    dapr_topic="task-events",
)
SEND_REMINDER = Function(
    name="send-reminder",
    consumes=frozenset({PING, REMINDER_DUE}),
    emits=frozenset({REMINDER_SENT}),
    handler="nextup.handlers.send_reminder:handle",
    dependencies=("store", "smtp", "sink", "backend"),
    dapr_topic="reminders",
    ticks=True,
)
HEALTH = Function(
    name="health",
    consumes=frozenset({HEALTH_PROBE, PING}),
    emits=frozenset({HEALTH_REPORTED}),
    handler="nextup.handlers.health:handle",
    dependencies=(),
    dapr_topic="health",
    ticks=True,
    report=True,
)


def _dapr_topics(functions: tuple[Function, ...]) -> dict[str, str]:
    """Where each emitted type is published under Dapr: the topic its consumer subscribes
    to, else (for the todo app and operators) the emitting function's own topic."""
    subscribed = {type_: f.dapr_topic for f in functions for type_ in f.consumes}
    return {t: subscribed.get(t, f.dapr_topic) for f in functions for t in sorted(f.emits)}


DAPR_TOPICS = _dapr_topics((COMPLETE_TASK, SCHEDULE_NEXT, SEND_REMINDER, HEALTH))
COMPLETE_TASK, SCHEDULE_NEXT, SEND_REMINDER, HEALTH = (
    replace(f, dapr_publish={t: DAPR_TOPICS[t] for t in f.emits})
    for f in (COMPLETE_TASK, SCHEDULE_NEXT, SEND_REMINDER, HEALTH)
)
ALL = {f.name: f for f in (COMPLETE_TASK, SCHEDULE_NEXT, SEND_REMINDER, HEALTH)}
