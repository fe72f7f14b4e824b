"""send-reminder: on a tick (PingSource, OpenFaaS cron-connector) or `todo.reminder.due`,
send every due reminder exactly once and emit `todo.reminder.sent` for each.

Exactly once: a reminder is claimed with a lease (compare-and-set) before sending, so
concurrent ticks never send it twice; it is marked sent right after. The only window left
is a crash between the SMTP hand-over and that mark: the reminder is then sent again
after its lease expires, with the same Message-ID.

A reminder whose task is no longer open is cancelled, never sent. Without a sink
(`K_SINK`) a delivery can reply with one event only, so it sends one reminder and
leaves the rest pending for the next tick (readiness says why).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from nextup import reminders
from nextup.envelope import CloudEvent
from nextup.errors import EventError, NotFound, Unavailable
from nextup.events import REMINDER_SENT, Decoded, ReminderDue, ReminderSent
from nextup.handlers.shared import emitted
from nextup.notify import Message, PermanentFailure
from nextup.reminders import Reminder, ReminderStatus
from nextup.runtime import Result
from nextup.services import Services
from nextup.tasks import Task, TaskStatus

PAGE = 100


async def _due(
    services: Services, data: ReminderDue | None, now: datetime
) -> AsyncIterator[Reminder]:
    store = services.store
    if data is not None and data.user_id and data.task_id:
        reminder = await services.db(store.get_reminder, data.user_id, data.task_id)
        if reminder is not None and reminder.claimable(now):
            yield reminder
        return
    cursor = None
    while True:
        page = await services.db(store.due_reminders, now, limit=PAGE, cursor=cursor)
        for reminder in page.items:
            if data is None or data.user_id is None or reminder.user_id == data.user_id:
                yield reminder
        cursor = page.cursor
        if cursor is None:
            return


async def _finish(services: Services, reminder: Reminder, **changes) -> Reminder | None:
    """Record what became of a claimed reminder; None if someone else changed it meanwhile."""
    from nextup.store import Conflict

    try:
        return await services.db(services.store.save_reminder, reminder.model_copy(update=changes))
    except Conflict:
        return None


async def _recipient(services: Services, task: Task) -> tuple[str, str]:
    """(channel, address): the task's webhook, else its e-mail, else the backend's address."""
    notify = task.notify
    if notify is not None and notify.webhook:
        return "webhook", notify.webhook
    if notify is not None and notify.email:
        return "email", notify.email
    email = await services.backend_user_email(task.user_id)
    if email:
        return "email", email
    raise PermanentFailure("no e-mail address or webhook for this task or user")


async def _send(services: Services, reminder: Reminder, task: Task) -> str:
    channel, address = await _recipient(services, task)
    message = Message(
        user_id=task.user_id,
        task_id=task.task_id,
        title=task.title,
        due_at=task.due_at.astimezone(task.zone()).isoformat() if task.due_at else None,
        remind_at=reminder.remind_at.isoformat(),
        message_id=reminders.message_id(reminder, services.settings.message_domain),
    )
    if channel == "webhook":
        await services.webhook(address, message)
    else:
        await services.mail(address, message)
    return channel


async def handle(services: Services, event: CloudEvent, decoded: Decoded) -> Result:
    store = services.store
    data = decoded.data if isinstance(decoded.data, ReminderDue) else None
    now = services.now()
    owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    lease = services.settings.reminder_lease
    limit = services.settings.sweep_limit if services.settings.sink else 1
    sent: list[CloudEvent] = []
    counts = {"sent": 0, "cancelled": 0, "failed": 0}
    async for candidate in _due(services, data, now):
        if len(sent) >= limit:
            counts["left_pending"] = counts.get("left_pending", 0) + 1
            continue
        claimed = await services.db(
            store.claim_reminder,
            candidate.user_id,
            candidate.task_id,
            owner=owner,
            now=now,
            lease=lease,
        )
        if claimed is None:
            continue
        task = await services.db(store.get_task, claimed.user_id, claimed.task_id)
        if task is None or task.status is not TaskStatus.OPEN or task.due_at != claimed.due_at:
            await _finish(services, claimed, status=ReminderStatus.CANCELLED, lease_until=None)
            counts["cancelled"] += 1
            continue
        try:
            channel = await _send(services, claimed, task)
        except Unavailable:
            # Give the lease back so the broker's retry of this tick can send it at once.
            await _finish(services, claimed, lease_owner=None, lease_until=None)
            raise
        except (PermanentFailure, NotFound) as exc:
            error = exc.error if isinstance(exc, EventError) else str(exc)
            await _finish(
                services, claimed, status=ReminderStatus.FAILED, error=error[:300], lease_until=None
            )
            counts["failed"] += 1
            continue
        done = reminders.mark_sent(
            claimed,
            channel=channel,
            message_id=reminders.message_id(claimed, services.settings.message_domain),
            sent_at=services.now(),
        )
        await _finish(services, done)
        counts["sent"] += 1
        sent.append(
            emitted(
                services,
                REMINDER_SENT,
                ReminderSent(
                    user_id=done.user_id,
                    task_id=done.task_id,
                    channel=channel,
                    message_id=done.message_id,
                    remind_at=done.remind_at,
                    due_at=done.due_at,
                    sent_at=done.sent_at,
                ),
                cause=event,
                purpose="sent",
                # A reminder instance is sent once whichever tick sends it: its id says so.
                id_=hashlib.sha256(done.message_id.encode()).hexdigest()[:32],
                subject=done.task_id,
            )
        )
    return Result("swept", events=tuple(sent), detail=counts)
