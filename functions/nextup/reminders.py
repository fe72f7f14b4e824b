"""Reminders: when a task's reminder is due, and the state of sending it. Pure, no I/O.

One reminder per task, keyed by the task. It is ``pending`` until a sender claims it
(a lease, so two senders never send it at once) and marks it ``sent`` (then
``announced`` once its event is out); completing or deleting the task cancels it.
Moving the task's due time reschedules it as a new pending reminder with a new
Message-ID, so an old send is never mistaken for the new one. Snoozing moves it to a
later time (pending again, even if it was sent): it goes out once more, then, and an update
of the task that does not change when the reminder is meant for keeps the snooze.

A failure belongs to the one reminder it happened to: a recipient that refuses for good
makes it ``failed`` at once (with the reason); one that fails for now (a webhook answering
503, a mailbox that is full) gets it retried on its own schedule, backing off from
`RETRY_FIRST` to `RETRY_MOST`, and ``failed`` after `MAX_ATTEMPTS`. A failed reminder is
announced like a sent one (`todo.reminder.failed`), so a person can find out why.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field

from nextup.fields import Id, Model
from nextup.tasks import Task, TaskStatus

# Per-reminder retries of a recipient that failed for now: 30 s, 1, 2, 4 ... minutes, at
# most an hour apart, and given up on the eighth attempt (about an hour and a half on).
RETRY_FIRST = timedelta(seconds=30)
RETRY_MOST = timedelta(hours=1)
MAX_ATTEMPTS = 8


class ReminderStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"  # the target refused it for good, or kept failing: `error` says why


def _utc(value: datetime) -> datetime:
    # Compared with "now" on every sweep: a naive time here would fail at the worst moment.
    if value.tzinfo is None:
        raise ValueError("remind_at must be timezone-aware")
    return value.astimezone(UTC)


class Reminder(Model):
    user_id: Id
    task_id: Id
    remind_at: Annotated[datetime, AfterValidator(_utc)]
    due_at: datetime | None = None
    # The time the task's own reminder setting gives, when a snooze moved `remind_at`
    # away from it; `snoozed_by` is the event that did (its replay changes nothing).
    planned_at: Annotated[datetime, AfterValidator(_utc)] | None = None
    snoozed_by: str | None = None
    status: ReminderStatus = ReminderStatus.PENDING
    lease_owner: str | None = None
    lease_until: datetime | None = None
    attempts: int = Field(default=0, ge=0)
    # When a recipient that failed for now is tried again (None: at remind_at).
    retry_at: Annotated[datetime, AfterValidator(_utc)] | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    channel: str | None = None
    message_id: str | None = None
    error: str | None = None
    # Whether `todo.reminder.sent` has gone out. A sent reminder stays in the due index
    # until it has (a transactional outbox), so a crash between the mail and the event
    # delays the event, never loses it.
    announced: bool = False
    version: int = Field(default=0, ge=0)

    @property
    def indexed(self) -> bool:
        """In the due index: waiting to be sent, or sent (or failed) and waiting to be
        announced."""
        return self.status is ReminderStatus.PENDING or self.unannounced

    @property
    def unannounced(self) -> bool:
        return self.status in (ReminderStatus.SENT, ReminderStatus.FAILED) and not self.announced

    def claimable(self, now: datetime) -> bool:
        """Pending, due, and not leased by a sender that may still be working on it."""
        return (
            self.status is ReminderStatus.PENDING
            and due_time(self) <= now
            and (self.lease_until is None or self.lease_until <= now)
        )


def due_time(reminder: Reminder) -> datetime:
    """When the reminder is next to be tried: its time, or its retry's."""
    return reminder.retry_at or reminder.remind_at


def remind_at(task: Task) -> datetime | None:
    """When the task's reminder should go out, or None if it has none."""
    if task.status is not TaskStatus.OPEN or task.due_at is None or task.reminder is None:
        return None
    return (task.due_at - task.reminder.before).astimezone(UTC)


def schedule(task: Task, current: Reminder | None) -> Reminder | None:
    """The reminder the task should have now, given the one stored (None: leave as is).

    Returns a changed reminder only when something must be written, so a replayed event
    writes nothing.
    """
    when = remind_at(task)
    if when is None:
        if current is not None and current.status is ReminderStatus.PENDING:
            return current.model_copy(
                update={
                    "status": ReminderStatus.CANCELLED,
                    "lease_owner": None,
                    "lease_until": None,
                }
            )
        return None
    if (
        current is not None
        and (current.planned_at or current.remind_at) == when
        and current.due_at == task.due_at
    ):
        return None
    fresh = Reminder(user_id=task.user_id, task_id=task.task_id, remind_at=when, due_at=task.due_at)
    if current is None:
        return fresh
    return fresh.model_copy(update={"version": current.version})


def snooze(reminder: Reminder, *, until: datetime, event_key: str) -> Reminder | None:
    """The reminder moved to `until`, pending again with a fresh Message-ID (sent, failed
    or not yet sent alike: a snoozed reminder goes out once more, then); None when it is
    cancelled (its task is closed) or this same event snoozed it already."""
    if reminder.status is ReminderStatus.CANCELLED or reminder.snoozed_by == event_key:
        return None
    return reminder.model_copy(
        update={
            "remind_at": _utc(until),
            "planned_at": reminder.planned_at or reminder.remind_at,
            "snoozed_by": event_key,
            "status": ReminderStatus.PENDING,
            "lease_owner": None,
            "lease_until": None,
            "attempts": 0,
            "retry_at": None,
            "sent_at": None,
            "failed_at": None,
            "channel": None,
            "message_id": None,
            "error": None,
            "announced": False,
        }
    )


def claim(reminder: Reminder, *, owner: str, now: datetime, lease: timedelta) -> Reminder | None:
    """The reminder leased to `owner`, or None if it cannot be claimed now."""
    if not reminder.claimable(now):
        return None
    return reminder.model_copy(
        update={
            "lease_owner": owner,
            "lease_until": now + lease,
            "attempts": reminder.attempts + 1,
        }
    )


def mark_sent(reminder: Reminder, *, channel: str, message_id: str, sent_at: datetime) -> Reminder:
    return reminder.model_copy(
        update={
            "status": ReminderStatus.SENT,
            "channel": channel,
            "message_id": message_id,
            "sent_at": sent_at,
            "lease_until": None,
        }
    )


def mark_failed(reminder: Reminder, *, error: str, failed_at: datetime) -> Reminder:
    """Failed for good: out of the sender's hands, to be announced with its reason."""
    return reminder.model_copy(
        update={
            "status": ReminderStatus.FAILED,
            "error": error[:300],
            "failed_at": failed_at,
            "lease_owner": None,
            "lease_until": None,
            "retry_at": None,
        }
    )


def retry_later(
    reminder: Reminder, *, error: str, now: datetime, after: float | None = None
) -> Reminder:
    """A claimed reminder whose recipient failed for now: tried again later, backing off
    (no sooner than `after` seconds when the recipient said so), or failed for good once
    it has had `MAX_ATTEMPTS`."""
    if reminder.attempts >= MAX_ATTEMPTS:
        return mark_failed(
            reminder, error=f"gave up after {reminder.attempts} attempts: {error}", failed_at=now
        )
    backoff = min(RETRY_FIRST * 2 ** max(reminder.attempts - 1, 0), RETRY_MOST)
    if after is not None:
        backoff = max(backoff, min(timedelta(seconds=after), RETRY_MOST))
    return reminder.model_copy(
        update={
            "error": error[:300],
            "retry_at": now + backoff,
            "lease_owner": None,
            "lease_until": None,
        }
    )


def release(reminder: Reminder) -> Reminder:
    """A claimed reminder that was not tried after all (what it needs is down): its lease
    given back and the attempt not counted."""
    return reminder.model_copy(
        update={
            "lease_owner": None,
            "lease_until": None,
            "attempts": max(reminder.attempts - 1, 0),
        }
    )


def message_id(reminder: Reminder, domain: str = "nextup.local") -> str:
    """A Message-ID stable for this reminder instance, so a resend after a crash is visibly
    the same mail."""
    digest = hashlib.sha256(
        f"{reminder.user_id}\0{reminder.task_id}\0{reminder.remind_at.isoformat()}".encode()
    ).hexdigest()[:32]
    return f"<{digest}@{domain}>"
