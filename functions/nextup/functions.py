"""The four functions, each declared once: every type it consumes with its handler, what
it emits, what it depends on, and its Dapr topic.

`functions/<name>/main.py` binds one of these to functions-framework; the eventing
manifests, the local runtime and the tests read the same declarations. Handlers are named,
not imported, so a function's cold start never loads the other functions' code.
"""

from __future__ import annotations

from dataclasses import replace

from nextup.contract import Function
from nextup.events import (
    HEALTH_PROBE,
    HEALTH_REPORTED,
    OCCURRENCE_REQUESTED,
    OCCURRENCE_SKIPPED,
    PING,
    REMINDER_DUE,
    REMINDER_FAILED,
    REMINDER_SENT,
    REMINDER_SNOOZED,
    TASK_COMPLETED,
    TASK_CREATED,
    TASK_DELETED,
    TASK_SCHEDULED,
    TASK_UPDATED,
)

_SCHEDULE_NEXT = "nextup.handlers.schedule_next"

COMPLETE_TASK = Function(
    name="complete-task",
    consumes={
        TASK_COMPLETED: "nextup.handlers.complete_task:handle",
        OCCURRENCE_SKIPPED: "nextup.handlers.complete_task:skip",
    },
    emits=frozenset({OCCURRENCE_REQUESTED}),
    dependencies=("store",),
    dapr_topic="task-events",
)
SCHEDULE_NEXT = Function(
    name="schedule-next",
    consumes={
        TASK_CREATED: f"{_SCHEDULE_NEXT}:created",
        TASK_UPDATED: f"{_SCHEDULE_NEXT}:updated",
        TASK_DELETED: f"{_SCHEDULE_NEXT}:deleted",
        OCCURRENCE_REQUESTED: f"{_SCHEDULE_NEXT}:occurrence",
        REMINDER_SNOOZED: f"{_SCHEDULE_NEXT}:snoozed",
    },
    emits=frozenset({TASK_SCHEDULED}),
    dependencies=("store", "backend"),
    dapr_topic="task-events",
)
SEND_REMINDER = Function(
    name="send-reminder",
    consumes={
        PING: "nextup.handlers.send_reminder:handle",
        REMINDER_DUE: "nextup.handlers.send_reminder:handle",
    },
    emits=frozenset({REMINDER_SENT, REMINDER_FAILED}),
    dependencies=("store", "smtp", "sink", "backend"),
    dapr_topic="reminders",
    ticks=True,
)
HEALTH = Function(
    name="health",
    consumes={
        HEALTH_PROBE: "nextup.handlers.health:handle",
        PING: "nextup.handlers.health:handle",
    },
    emits=frozenset({HEALTH_REPORTED}),
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


# Every function, in the order the manifests list them.
_DECLARED = (COMPLETE_TASK, SCHEDULE_NEXT, SEND_REMINDER, HEALTH)
DAPR_TOPICS = _dapr_topics(_DECLARED)
ALL = {f.name: replace(f, dapr_publish={t: DAPR_TOPICS[t] for t in f.emits}) for f in _DECLARED}
# The names stand for the declarations as completed (with their Dapr topics), as in ALL.
COMPLETE_TASK, SCHEDULE_NEXT, SEND_REMINDER, HEALTH = ALL.values()
