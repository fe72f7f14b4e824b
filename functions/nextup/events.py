"""The event catalog: every CloudEvent type in the flow and the model of its `data`.

`decode` turns a parsed CloudEvent into (canonical type, validated data). It also accepts
the seed's producers as they are: a Dapr envelope (`com.dapr.event.sent`) and any event
whose data is ``{event_type, task_id, user_id, payload: {...}}``, which it maps onto the
canonical types. `docs/EVENTS.md` is generated from `CATALOG` (`nextup events docs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field, ValidationError, model_validator

from nextup.envelope import CloudEvent
from nextup.errors import BadRequest, UnsupportedMediaType, from_validation_error
from nextup.fields import (
    Id,
    Model,
    NotifySpec,
    RecurrenceSpec,
    ReminderSpec,
    TaskFields,
    Timestamp,
    TimeZoneName,
    Title,
)

TASK_CREATED = "todo.task.created"
TASK_UPDATED = "todo.task.updated"
TASK_DELETED = "todo.task.deleted"
TASK_COMPLETED = "todo.task.completed"
OCCURRENCE_SKIPPED = "todo.occurrence.skipped"
REMINDER_SNOOZED = "todo.reminder.snoozed"
OCCURRENCE_REQUESTED = "todo.occurrence.requested"
TASK_SCHEDULED = "todo.task.scheduled"
REMINDER_DUE = "todo.reminder.due"
REMINDER_SENT = "todo.reminder.sent"
REMINDER_FAILED = "todo.reminder.failed"
HEALTH_PROBE = "todo.health.probe"
HEALTH_REPORTED = "todo.health.reported"
PING = "dev.knative.sources.ping"
DAPR_ENVELOPE = "com.dapr.event.sent"


class TaskEvent(TaskFields):
    """Data of `todo.task.created` and `todo.task.updated`."""

    user_id: Id
    task_id: Id
    parent_task_id: Id | None = None


class TaskRef(Model):
    """Data of `todo.task.deleted`: which task."""

    user_id: Id
    task_id: Id


class TaskCompleted(TaskFields):
    """Data of `todo.task.completed`; task fields let an unknown task be registered."""

    user_id: Id
    task_id: Id
    completed_at: Timestamp | None = None


class OccurrenceSkipped(Model):
    """Data of `todo.occurrence.skipped`: the user lets this occurrence pass; it is closed
    as skipped and the series goes on (`skipped_at`: when, else the event's time)."""

    user_id: Id
    task_id: Id
    skipped_at: Timestamp | None = None


# The longest a reminder may be snoozed by `for`: beyond it, move the task instead.
MAX_SNOOZE = timedelta(days=366)


class ReminderSnoozed(Model):
    """Data of `todo.reminder.snoozed`: send the task's reminder again (once) later, `for`
    a while from the event's time (an ISO 8601 duration such as ``PT10M``) or `until` a
    time (one of the two; a time without an offset is read in the task's zone)."""

    user_id: Id
    task_id: Id
    for_: timedelta | None = Field(default=None, alias="for", gt=timedelta(0), le=MAX_SNOOZE)
    until: Timestamp | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ReminderSnoozed:
        if (self.for_ is None) == (self.until is None):
            raise ValueError("give exactly one of 'for' (an ISO 8601 duration) and 'until'")
        return self


class OccurrenceRequested(Model):
    """Data of `todo.occurrence.requested`: a completed occurrence of a recurring series."""

    user_id: Id
    task_id: Id
    series_id: Id
    series_start: Timestamp | None = None
    occurrence: int = Field(default=0, ge=0)
    title: Title = ""
    due_at: Timestamp | None = None
    completed_at: Timestamp
    timezone: TimeZoneName | None = None
    recurrence: RecurrenceSpec
    reminder: ReminderSpec | None = None
    notify: NotifySpec | None = None


class TaskScheduled(Model):
    """Data of `todo.task.scheduled`: the next occurrence, created."""

    user_id: Id
    task_id: Id
    parent_task_id: Id
    series_id: Id
    occurrence: int = Field(ge=0)
    title: Title = ""
    due_at: datetime
    timezone: str | None = None
    remind_at: datetime | None = None
    # The due times of the occurrences after this one, if each is done when due: what a
    # UI shows as coming up, without a recurrence engine of its own.
    upcoming: list[datetime] = Field(default=[], max_length=10)  # see fields.Model


class ReminderDue(Model):
    """Data of `todo.reminder.due`: send due reminders now, optionally for one user or task."""

    user_id: Id | None = None
    task_id: Id | None = None


class ReminderSent(Model):
    """Data of `todo.reminder.sent`."""

    user_id: Id
    task_id: Id
    channel: Literal["email", "webhook"]
    message_id: str = Field(max_length=256)
    remind_at: datetime
    due_at: datetime | None = None
    sent_at: datetime


class ReminderFailed(Model):
    """Data of `todo.reminder.failed`: a reminder that could not be delivered, for good."""

    user_id: Id
    task_id: Id
    channel: Literal["email", "webhook"] | None = None
    error: str = Field(max_length=300)
    attempts: int = Field(ge=0)
    remind_at: datetime
    due_at: datetime | None = None
    failed_at: datetime


class HealthProbe(Model):
    """Data of `todo.health.probe`: a canary through the broker."""

    sent_at: Timestamp | None = None


class Check(Model):
    ok: bool
    latency_ms: float
    error: str | None = None


class HealthReported(Model):
    """Data of `todo.health.reported`."""

    function: str = Field(max_length=64)
    ok: bool
    checks: dict[str, Check]
    delay_ms: float | None = None
    probe_id: str = Field(max_length=256)


class PingData(Model):
    """Data of a PingSource tick: whatever the PingSource was configured with, unread."""


@dataclass(frozen=True)
class EventType:
    """A type of the catalog. Which functions consume it is not said here: that is their
    declaration (`nextup.functions`), and `nextup.catalog` lists them from it."""

    type: str
    model: type[BaseModel]
    producer: str
    summary: str
    example: dict[str, Any] = field(default_factory=dict)
    # Who reads it outside nextup's functions (the todo app, operators).
    audience: tuple[str, ...] = ()


_TASK_EXAMPLE = {
    "user_id": "u1",
    "task_id": "t1",
    "title": "Water the plants",
    "due_at": "2026-11-24T09:00:00+01:00",
    "timezone": "Europe/Berlin",
    "recurrence": {
        "rule": "FREQ=WEEKLY;BYDAY=MO,TH",
        "mode": "schedule",
        "until": None,
        "count": None,
    },
    "reminder": {"before": "PT15M"},
    "notify": {"email": "ann@example.com"},
}

CATALOG: dict[str, EventType] = {
    t.type: t
    for t in (
        EventType(
            TASK_CREATED,
            TaskEvent,
            "the todo app",
            "A task was created: register it and schedule its reminder.",
            _TASK_EXAMPLE,
        ),
        EventType(
            TASK_UPDATED,
            TaskEvent,
            "the todo app",
            "A task changed: apply the fields present and reschedule its reminder.",
            {"user_id": "u1", "task_id": "t1", "due_at": "2026-11-25T09:00:00+01:00"},
        ),
        EventType(
            TASK_DELETED,
            TaskRef,
            "the todo app",
            "A task was deleted: cancel its reminder.",
            {"user_id": "u1", "task_id": "t1"},
        ),
        EventType(
            TASK_COMPLETED,
            TaskCompleted,
            "the todo app",
            "A task was completed: mark it done once, cancel its reminder, ask for the next "
            "occurrence if it recurs.",
            {"user_id": "u1", "task_id": "t1", "completed_at": "2026-11-24T10:30:00+01:00"},
        ),
        EventType(
            OCCURRENCE_SKIPPED,
            OccurrenceSkipped,
            "the todo app",
            "The user let an occurrence of a recurring task pass: close it as skipped (not "
            "done), cancel its reminder, and ask for the next occurrence (once, in either mode).",
            {"user_id": "u1", "task_id": "t1", "skipped_at": "2026-11-24T08:00:00+01:00"},
        ),
        EventType(
            REMINDER_SNOOZED,
            ReminderSnoozed,
            "the todo app",
            "Remind again later: the task's reminder goes out once more, `for` a while from "
            "the event's time (ISO 8601 duration) or `until` a time; pending again even if it "
            "was sent.",
            {"user_id": "u1", "task_id": "t1", "for": "PT10M"},
        ),
        EventType(
            OCCURRENCE_REQUESTED,
            OccurrenceRequested,
            "complete-task",
            "A recurring task's occurrence was completed or skipped: create the next one.",
            {
                "user_id": "u1",
                "task_id": "t1",
                "series_id": "t1",
                "series_start": "2026-11-24T09:00:00+01:00",
                "occurrence": 0,
                "title": "Water the plants",
                "due_at": "2026-11-24T09:00:00+01:00",
                "completed_at": "2026-11-24T10:30:00+01:00",
                "timezone": "Europe/Berlin",
                "recurrence": {"rule": "FREQ=WEEKLY;BYDAY=MO,TH", "mode": "schedule"},
                "reminder": {"before": "PT15M"},
                "notify": {"email": "ann@example.com"},
            },
        ),
        EventType(
            TASK_SCHEDULED,
            TaskScheduled,
            "schedule-next",
            "The next occurrence of a recurring task exists; `upcoming` lists the due times "
            "after it (if each is done when due).",
            {
                "user_id": "u1",
                "task_id": "t1@20261127T080000Z",
                "parent_task_id": "t1",
                "series_id": "t1",
                "occurrence": 1,
                "title": "Water the plants",
                "due_at": "2026-11-27T09:00:00+01:00",
                "timezone": "Europe/Berlin",
                "remind_at": "2026-11-27T07:45:00Z",
                "upcoming": [
                    "2026-11-30T09:00:00+01:00",
                    "2026-12-03T09:00:00+01:00",
                    "2026-12-07T09:00:00+01:00",
                ],
            },
            audience=("the todo app",),
        ),
        EventType(
            REMINDER_DUE,
            ReminderDue,
            "any producer",
            "Send every due reminder now (all users, or one user or task).",
            {"user_id": "u1"},
        ),
        EventType(
            PING,
            PingData,
            "Knative PingSource",
            "A scheduled tick: sweep due reminders; run the health canary.",
            {"sweep": "reminders"},
        ),
        EventType(
            REMINDER_SENT,
            ReminderSent,
            "send-reminder",
            "A reminder went out.",
            {
                "user_id": "u1",
                "task_id": "t1",
                "channel": "email",
                "message_id": "<3f2a...@nextup.local>",
                "remind_at": "2026-11-24T07:45:00Z",
                "due_at": "2026-11-24T09:00:00+01:00",
                "sent_at": "2026-11-24T07:45:02Z",
            },
            audience=("the todo app",),
        ),
        EventType(
            REMINDER_FAILED,
            ReminderFailed,
            "send-reminder",
            "A reminder could not be delivered and will not be tried again: the recipient "
            "refused it, or kept failing through every retry. `error` says why.",
            {
                "user_id": "u1",
                "task_id": "t1",
                "channel": "webhook",
                "error": "webhook answered 410",
                "attempts": 1,
                "remind_at": "2026-11-24T07:45:00Z",
                "due_at": "2026-11-24T09:00:00+01:00",
                "failed_at": "2026-11-24T07:45:01Z",
            },
            audience=("the todo app",),
        ),
        EventType(
            HEALTH_PROBE,
            HealthProbe,
            "any producer",
            "A canary through the broker: answered with todo.health.reported.",
            {"sent_at": "2026-11-24T09:00:00Z"},
        ),
        EventType(
            HEALTH_REPORTED,
            HealthReported,
            "health",
            "Every dependency's status and how long the probe took to arrive.",
            {
                "function": "health",
                "ok": True,
                "checks": {"store": {"ok": True, "latency_ms": 1.2, "error": None}},
                "delay_ms": 35.0,
                "probe_id": "p1",
            },
            audience=("operators",),
        ),
    )
}

# The seed's `event_type` values and the canonical type each one means.
SEED_TYPES = {
    "task.created": TASK_CREATED,
    "task.updated": TASK_UPDATED,
    "task.deleted": TASK_DELETED,
    "task.completed": TASK_COMPLETED,
    "occurrence.skipped": OCCURRENCE_SKIPPED,
    "reminder.snoozed": REMINDER_SNOOZED,
    "reminder.due": REMINDER_DUE,
    "reminder": REMINDER_DUE,
}


class Decoded(NamedTuple):
    type: str
    data: BaseModel
    seed: bool  # arrived in the seed's shape


def _unwrap_dapr(data: Any) -> Any:
    # A Dapr app that publishes through the broker may wrap its CloudEvent in another.
    if isinstance(data, dict) and data.get("type") == DAPR_ENVELOPE and "specversion" in data:
        return data.get("data")
    return data


def _from_seed(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    event_type = data.get("event_type")
    if not isinstance(event_type, str):
        raise BadRequest("data.event_type must be a string", field="data.event_type")
    canonical = SEED_TYPES.get(event_type) or (event_type if event_type in CATALOG else None)
    if canonical is None:
        raise BadRequest(
            f"unsupported event_type {event_type[:64]!r}: expected one of {sorted(SEED_TYPES)}",
            field="data.event_type",
        )
    payload = data.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise BadRequest("data.payload must be an object", field="data.payload")
    mapped: dict[str, Any] = {"user_id": data.get("user_id"), "task_id": data.get("task_id")}
    for name in ("title", "due_at", "completed_at", "timezone", "reminder", "notify"):
        if name in payload:
            mapped[name] = payload[name]
    if payload.get("recurring_pattern"):
        mapped["recurrence"] = {
            "rule": payload["recurring_pattern"],
            "until": payload.get("recurring_end_date"),
        }
    return canonical, mapped


def decode(event: CloudEvent) -> Decoded:
    """The canonical type and validated data of an event; BadRequest names what is wrong."""
    data = _unwrap_dapr(event.data)
    seed = isinstance(data, dict) and "event_type" in data
    if seed:
        type_, data = _from_seed(data)
    else:
        type_ = event["type"]
        if type_ == DAPR_ENVELOPE:
            raise BadRequest(
                "a Dapr event must carry the seed's {event_type, task_id, user_id, payload} data",
                field="data.event_type",
            )
    spec = CATALOG.get(type_)
    if spec is None:
        raise BadRequest(f"unsupported event type {type_[:128]!r}", field="type")
    if spec.model is PingData:
        # A tick's data is configuration for humans (or plain text); nothing in it is read.
        return Decoded(type_, PingData(), seed)
    if data is None:
        data = {}
    if isinstance(data, (bytes, bytearray)):
        raise UnsupportedMediaType(
            f"{type_} data must be JSON (datacontenttype application/json)", field="datacontenttype"
        )
    if not isinstance(data, dict):
        raise BadRequest("event data must be a JSON object", field="data")
    try:
        model = spec.model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    return Decoded(type_, model, seed)
