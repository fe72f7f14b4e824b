"""Tasks and how they change: pure state transitions, no I/O.

A task moves ``open -> completed``, ``open -> skipped`` (an occurrence of a series the user
let pass) or ``open -> deleted``, and never back. Every transition
records the event that caused it (``completed_by`` ...), so a redelivered event can be told
from a second, different event and answered with the same reply as the first delivery.

Recurring tasks form a series: each occurrence keeps the series' root id and start, and
the next occurrence gets a deterministic id derived from them, so creating it is a
put-if-absent that happens once however often it is requested.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import NamedTuple

from pydantic import Field

from nextup.events import OccurrenceRequested
from nextup.fields import (
    MAX_YEAR,
    Id,
    Model,
    NotifySpec,
    RecurrenceSpec,
    ReminderSpec,
    TaskFields,
    localize,
    zone,
)


class TaskStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    DELETED = "deleted"


class Task(Model):
    """A task as stored: the producer's fields plus series and transition bookkeeping."""

    user_id: Id
    task_id: Id
    title: str = ""
    status: TaskStatus = TaskStatus.OPEN
    due_at: datetime | None = None
    timezone: str | None = None
    recurrence: RecurrenceSpec | None = None
    reminder: ReminderSpec | None = None
    notify: NotifySpec | None = None
    parent_task_id: Id | None = None
    # The first task of a recurring series; its id and due time anchor every occurrence.
    series_id: Id
    series_start: datetime | None = None
    occurrence: int = Field(default=0, ge=0)
    completed_at: datetime | None = None
    skipped_at: datetime | None = None
    # The event whose fields the task holds now (its time, and its key to break ties):
    # an update that is older arrived out of order and changes nothing.
    changed_at: datetime | None = None
    changed_by: str | None = None
    # Keys (`nextup.envelope.event_key`) of the events behind each transition.
    created_by: str | None = None
    updated_by: str | None = None
    completed_by: str | None = None
    skipped_by: str | None = None
    deleted_by: str | None = None
    # Optimistic concurrency: the store bumps it on every write and refuses stale ones.
    version: int = Field(default=0, ge=0)

    def zone(self) -> tzinfo:
        """The zone recurrence runs in: the named zone, else due_at's own offset, else UTC."""
        if self.timezone:
            return zone(self.timezone)
        if self.due_at is not None and self.due_at.tzinfo is not None:
            return self.due_at.tzinfo
        return UTC

    @property
    def is_recurring(self) -> bool:
        return self.recurrence is not None


_FIELD_NAMES = tuple(TaskFields.model_fields)


def _resolved(fields: TaskFields, tz: tzinfo | None) -> dict:
    """The producer's fields with datetimes placed in the task's zone: naive ones read
    there, aware ones shown there (the same instant, on the task's own wall clock)."""
    values = {
        name: getattr(fields, name) for name in _FIELD_NAMES if name in fields.model_fields_set
    }
    if values.get("due_at") is not None:
        due_at = localize(values["due_at"], tz)
        values["due_at"] = due_at.astimezone(tz) if tz is not None else due_at
    if values.get("recurrence") is not None and values["recurrence"].until is not None:
        values["recurrence"] = values["recurrence"].model_copy(
            update={"until": localize(values["recurrence"].until, tz)}
        )
    return values


def register(
    user_id: str,
    task_id: str,
    fields: TaskFields,
    *,
    event_key: str,
    at: datetime | None = None,
    parent_task_id: str | None = None,
) -> Task:
    """A new open task from a producer's event (sent `at`); it starts its own series."""
    values = _resolved(fields, fields.zone())
    due_at = values.get("due_at")
    return Task(
        user_id=user_id,
        task_id=task_id,
        **{k: v for k, v in values.items() if v is not None},
        parent_task_id=parent_task_id,
        series_id=task_id,
        series_start=due_at,
        created_by=event_key,
        changed_at=at,
        changed_by=event_key,
    )


def is_older(task: Task, *, at: datetime | None, event_key: str) -> bool:
    """Whether an event sent `at` is older than the one whose fields the task holds: the
    newest event time wins, the greater event key among equal times (any order of
    arrival gives the same result). An event with no time is never older."""
    if at is None or task.changed_at is None:
        return False
    return (at, event_key) < (task.changed_at, task.changed_by or "")


def update(task: Task, fields: TaskFields, *, event_key: str, at: datetime | None = None) -> Task:
    """Apply the fields a producer set (and only those) to an open task.

    Changing the recurrence or moving the first occurrence re-anchors the series.
    """
    tz = fields.zone() or task.zone()
    values = _resolved(fields, tz)
    changes = dict(values, updated_by=event_key, changed_at=at, changed_by=event_key)
    if task.occurrence == 0 and "due_at" in values:
        changes["series_start"] = values["due_at"]
    if "recurrence" in values and task.occurrence > 0 and values["recurrence"] != task.recurrence:
        # A new rule starts a new series here, so its phase and COUNT begin at this task.
        changes.update(
            series_id=task.task_id, series_start=values.get("due_at", task.due_at), occurrence=0
        )
    return task.model_copy(update=changes)


def check_series(task: Task) -> Task:
    """The task, if its rule occurs at all from the task's own start; `NeverOccurs` (a
    `RuleError`) when it never does (`FREQ=YEARLY;INTERVAL=4;BYYEARDAY=366` from 2025),
    so such a task is refused when it is created, not when its first completion asks for
    a next occurrence that cannot exist."""
    if task.recurrence is None or task.series_start is None:
        return task
    from nextup.recurrence import first_after  # the engine: only where rules are
    from nextup.recurrence.errors import NeverOccurs

    if first_after(task.recurrence.rule, task.series_start) is None:
        raise NeverOccurs(
            f"{task.recurrence.rule!r} never occurs from the task's due_at "
            f"{task.series_start.isoformat()}"
        )
    return task


class Outcome(StrEnum):
    """What a transition did, which decides the reply and whether effects follow."""

    APPLIED = "applied"  # this event changed the task
    REPLAYED = "replayed"  # this same event changed it before: answer as the first time
    NOOP = "noop"  # another event got there first, or the task is gone
    STALE = "stale"  # an update older than the one applied: arrived out of order


class Transition(NamedTuple):
    task: Task
    outcome: Outcome


def _close(task: Task, status: TaskStatus, *, at: datetime, event_key: str) -> Transition:
    """Close an open task as `status` (completed or skipped) once, recording when and by
    which event in its `<status>_at` and `<status>_by`."""
    by = f"{status.value}_by"
    if task.status is TaskStatus.OPEN:
        closed = task.model_copy(update={"status": status, f"{status.value}_at": at, by: event_key})
        return Transition(closed, Outcome.APPLIED)
    if getattr(task, by) == event_key:
        return Transition(task, Outcome.REPLAYED)
    return Transition(task, Outcome.NOOP)


def complete(task: Task, *, completed_at: datetime, event_key: str) -> Transition:
    """Mark an open task completed, once."""
    return _close(task, TaskStatus.COMPLETED, at=completed_at, event_key=event_key)


def skip(task: Task, *, skipped_at: datetime, event_key: str) -> Transition:
    """Close an open occurrence of a series as skipped (not done), once: the series goes
    on as if it had been completed then."""
    return _close(task, TaskStatus.SKIPPED, at=skipped_at, event_key=event_key)


def delete(task: Task, *, event_key: str) -> Transition:
    """Delete a task that is not deleted yet; completed tasks may be deleted too."""
    if task.status is not TaskStatus.DELETED:
        gone = task.model_copy(update={"status": TaskStatus.DELETED, "deleted_by": event_key})
        return Transition(gone, Outcome.APPLIED)
    if task.deleted_by == event_key:
        return Transition(task, Outcome.REPLAYED)
    return Transition(task, Outcome.NOOP)


def occurrence_stamp(due_at: datetime) -> str:
    return due_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


_DERIVED = re.compile(r"(?P<root>.+)@\d{8}T\d{6}Z")


def series_root(task_id: str) -> str | None:
    """The series id inside an occurrence id made by `next_task_id`, if it is one."""
    match = _DERIVED.fullmatch(task_id)
    return match["root"] if match else None


_HASHED = re.compile(r"[0-9a-f]{24}@\d{8}T\d{6}Z")


def hashed_occurrence(task_id: str) -> bool:
    """Whether the id has the form `next_task_id` gives the occurrences of a series whose
    id is too long for `<series>@<time>`: the series cannot be read back from it."""
    return _HASHED.fullmatch(task_id) is not None


def next_task_id(series_id: str, due_at: datetime) -> str:
    """The id of the series' occurrence due at `due_at`: the same whoever asks, however often."""
    candidate = f"{series_id}@{occurrence_stamp(due_at)}"
    if len(candidate) <= 128:
        return candidate
    digest = hashlib.sha256(series_id.encode()).hexdigest()[:24]
    return f"{digest}@{occurrence_stamp(due_at)}"


def occurrence_request(task: Task) -> OccurrenceRequested | None:
    """What schedule-next needs to create the next occurrence of a recurring task that was
    completed or skipped (a skip counts as done when it was skipped, in either mode)."""
    closed_at = {TaskStatus.COMPLETED: task.completed_at, TaskStatus.SKIPPED: task.skipped_at}
    if task.recurrence is None or closed_at.get(task.status) is None:
        return None
    return OccurrenceRequested(
        user_id=task.user_id,
        task_id=task.task_id,
        series_id=task.series_id,
        series_start=task.series_start,
        occurrence=task.occurrence,
        title=task.title,
        due_at=task.due_at,
        completed_at=closed_at[task.status],
        timezone=task.timezone,
        recurrence=task.recurrence,
        reminder=task.reminder,
        notify=task.notify,
    )


def request_zone(request: OccurrenceRequested) -> tzinfo:
    """The zone a series runs in: its named zone, else the offset its own times carry,
    else UTC. Never the zone of the machine that happens to compute it."""
    if request.timezone:
        return zone(request.timezone)
    for moment in (request.series_start, request.due_at, request.completed_at):
        if moment is not None and moment.tzinfo is not None:
            return moment.tzinfo
    return UTC


def next_occurrence(request: OccurrenceRequested, *, event_key: str) -> Task | None:
    """The series' next task after the completed one, or None when the series has ended
    (by its rule, its end, or by reaching the last year a task may have, `MAX_YEAR`).

    Times are moved into the task's zone first (a time without an offset is read there),
    so the rule runs on its wall clock and a daily 09:00 task stays at 09:00 across DST
    changes.
    """
    tz, series_start, due_at, completed_at = _series_clock(request)
    spec = request.recurrence
    nxt = _following(spec, tz, series_start, due_at, completed_at, request.occurrence)
    if nxt is None:
        return None
    return Task(
        user_id=request.user_id,
        task_id=next_task_id(request.series_id, nxt),
        title=request.title,
        due_at=nxt,
        timezone=request.timezone,
        recurrence=spec,
        reminder=request.reminder,
        notify=request.notify,
        parent_task_id=request.task_id,
        series_id=request.series_id,
        series_start=series_start,
        occurrence=request.occurrence + 1,
        created_by=event_key,
    )


def _series_clock(request: OccurrenceRequested) -> tuple[tzinfo, datetime, datetime, datetime]:
    """(zone, series start, due, completed) of the occurrence done, each moved into the
    series' zone (a time without an offset is read there)."""
    tz = request_zone(request)
    completed_at = localize(request.completed_at, tz).astimezone(tz)
    due_at = localize(request.due_at, tz).astimezone(tz) if request.due_at else completed_at
    series_start = (
        localize(request.series_start, tz).astimezone(tz) if request.series_start else due_at
    )
    return tz, series_start, due_at, completed_at


def _following(
    spec: RecurrenceSpec,
    tz: tzinfo,
    series_start: datetime,
    due_at: datetime,
    completed_at: datetime,
    index: int,
) -> datetime | None:
    """The due time after occurrence `index` (due `due_at`, done `completed_at`), times
    already in the series' zone; None past the series' end or `MAX_YEAR`."""
    from nextup.recurrence.due import next_due  # the engine: schedule-next only

    nxt = next_due(
        spec.rule,
        series_start=series_start,
        due_at=due_at,
        completed_at=completed_at,
        mode=spec.mode,
        until=localize(spec.until, tz),
        count=spec.count,
        index=index,
    )
    return None if nxt is None or nxt.year > MAX_YEAR else nxt


UPCOMING = 3  # how many due times after a new occurrence `todo.task.scheduled` lists


def upcoming(task: Task, *, count: int = UPCOMING) -> list[datetime]:
    """The due times of the occurrences after `task`, if each is done when it is due
    (what a user sees coming; in completion mode, a projection), fewer when the series
    ends. The same times as `next_occurrence` gives step by step, without building the
    tasks in between (they were a sixth of schedule-next's CPU)."""
    done = task.model_copy(update={"status": TaskStatus.COMPLETED, "completed_at": task.due_at})
    request = occurrence_request(done) if task.due_at is not None else None
    if request is None:
        return []
    assert request.recurrence is not None
    tz, series_start, due_at, _ = _series_clock(request)  # completed when it was due
    found: list[datetime] = []
    index = request.occurrence
    while len(found) < count:
        nxt = _following(request.recurrence, tz, series_start, due_at, due_at, index)
        if nxt is None:
            break
        found.append(nxt)
        due_at, index = nxt, index + 1
    return found
