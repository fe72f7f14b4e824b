"""Reminders: when a task's reminder is due, and the state of sending it. Pure, no I/O.

One reminder per task, keyed by the task. It is ``pending`` until a sender claims it
(a lease, so two senders never send it at once) and marks it ``sent`` (then
``announced`` once its event is out); completing or deleting the task cancels it.
Moving the task's due time reschedules it as a new pending reminder with a new
Message-ID, so an old send is never mistaken for the new one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field

from nextup.fields import Id, Model
from nextup.tasks import Task, TaskStatus


class ReminderStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"  # the target refused it for good (no address, webhook 4xx ...)


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
    status: ReminderStatus = ReminderStatus.PENDING
    lease_owner: str | None = None
    lease_until: datetime | None = None
    attempts: int = Field(default=0, ge=0)
    sent_at: datetime | None = None
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
        """In the due index: waiting to be sent, or sent and waiting to be announced."""
        return self.status is ReminderStatus.PENDING or (
            self.status is ReminderStatus.SENT and not self.announced
        )

    @property
    def unannounced(self) -> bool:
        return self.status is ReminderStatus.SENT and not self.announced

    def claimable(self, now: datetime) -> bool:
        """Pending, due, and not leased by a sender that may still be working on it."""
        return (
            self.status is ReminderStatus.PENDING
            and self.remind_at <= now
            and (self.lease_until is None or self.lease_until <= now)
        )


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
    if current is not None and current.remind_at == when and current.due_at == task.due_at:
        return None
    fresh = Reminder(user_id=task.user_id, task_id=task.task_id, remind_at=when, due_at=task.due_at)
    if current is None:
        return fresh
    return fresh.model_copy(update={"version": current.version})


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


def message_id(reminder: Reminder, domain: str = "nextup.local") -> str:
    """A Message-ID stable for this reminder instance, so a resend after a crash is visibly
    the same mail."""
    digest = hashlib.sha256(
        f"{reminder.user_id}\0{reminder.task_id}\0{reminder.remind_at.isoformat()}".encode()
    ).hexdigest()[:32]
    return f"<{digest}@{domain}>"
