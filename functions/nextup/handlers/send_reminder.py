"""send-reminder: on a tick (PingSource, OpenFaaS cron-connector) or `todo.reminder.due`,
send every due reminder exactly once and emit `todo.reminder.sent` for each.

Exactly once: a reminder is claimed with a lease (compare-and-set) before sending, so
concurrent ticks never send it twice; it is marked sent right after. The only window left
is a crash between the SMTP hand-over and that mark: the reminder is then sent again
after its lease expires, with the same Message-ID.

The `todo.reminder.sent` event is never lost either: a sent reminder stays in the due
index until its event is out (an outbox), and the next sweep emits what a crash left
behind, under the same id, derived from the reminder.

One instance runs one sweep at a time: a tick that finds a sweep running here answers
at once ("coalesced"); that sweep, or the next tick, covers what it would have done. Ten
concurrent sweeps in one process would only fight over the same claims and stretch every
one of them past its Trigger's timeout.

A reminder whose task is no longer open is cancelled, never sent. Without a sink
(`K_SINK`) a delivery can reply with one event only, so it handles one reminder and
leaves the rest for the next tick (readiness says why).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from nextup import reminders
from nextup.envelope import CloudEvent
from nextup.errors import EventError, NotFound, Unavailable
from nextup.events import REMINDER_SENT, Decoded, ReminderDue, ReminderSent
from nextup.handlers.shared import emitted, refuse_foreign
from nextup.notify import Message, PermanentFailure
from nextup.reminders import Reminder, ReminderStatus
from nextup.runtime import Result
from nextup.services import Services
from nextup.tasks import Task, TaskStatus

PAGE = 100
# A delivery must answer within its Trigger's timeout (PT30S), and announcing what it sent
# takes about as long again: after this many seconds a sweep claims nothing more and
# leaves the rest to the next tick.
SWEEP_BUDGET = 5.0
log = logging.getLogger("nextup.send_reminder")
_sweeping = asyncio.Lock()  # held by this instance's sweep over every user


async def _due(
    services: Services, data: ReminderDue | None, now: datetime
) -> AsyncIterator[Reminder]:
    """The reminders this delivery should look at: one task's, one user's, or everyone's."""
    store = services.store
    if data is not None and data.user_id and data.task_id:
        reminder = await services.db(store.get_reminder, data.user_id, data.task_id)
        if reminder is None:
            await refuse_foreign(services, data.user_id, data.task_id)  # 403, not a no-op
        if reminder is not None and reminder.indexed and reminder.remind_at <= now:
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


async def _save(services: Services, reminder: Reminder, **changes) -> Reminder | None:
    """Write a change to a reminder; None if someone else changed it meanwhile."""
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


async def _deliver(
    services: Services, candidate: Reminder, owner: str, now: datetime
) -> Reminder | str:
    """Claim and send one pending reminder: the sent reminder, or what became of it."""
    store = services.store
    claimed = await services.db(
        store.claim_reminder,
        candidate.user_id,
        candidate.task_id,
        owner=owner,
        # The lease runs from the claim, not from the sweep's start: a long sweep would
        # otherwise hand out leases that have already run out.
        now=max(now, services.now()),
        lease=services.settings.reminder_lease,
    )
    if claimed is None:
        return "skipped"
    task = await services.db(store.get_task, claimed.user_id, claimed.task_id)
    if task is None or task.status is not TaskStatus.OPEN or task.due_at != claimed.due_at:
        await _save(services, claimed, status=ReminderStatus.CANCELLED, lease_until=None)
        return "cancelled"
    try:
        channel = await _send(services, claimed, task)
    except Unavailable:
        # Give the lease back so the broker's retry of this tick can send it at once.
        await _save(services, claimed, lease_owner=None, lease_until=None)
        raise
    except (PermanentFailure, NotFound) as exc:
        error = exc.error if isinstance(exc, EventError) else str(exc)
        await _save(
            services, claimed, status=ReminderStatus.FAILED, error=error[:300], lease_until=None
        )
        return "failed"
    sent = reminders.mark_sent(
        claimed,
        channel=channel,
        message_id=reminders.message_id(claimed, services.settings.message_domain),
        sent_at=services.now(),
    )
    saved = await _save(services, sent)
    return saved if saved is not None else "skipped"


def _announcement(services: Services, cause: CloudEvent, reminder: Reminder) -> CloudEvent:
    """The reminder's `todo.reminder.sent`, the same whichever delivery emits it."""
    assert reminder.channel in ("email", "webhook") and reminder.message_id and reminder.sent_at
    return emitted(
        services,
        REMINDER_SENT,
        ReminderSent(
            user_id=reminder.user_id,
            task_id=reminder.task_id,
            channel=reminder.channel,
            message_id=reminder.message_id,
            remind_at=reminder.remind_at,
            due_at=reminder.due_at,
            sent_at=reminder.sent_at,
        ),
        cause=cause,
        purpose="sent",
        subject=reminder.task_id,
        id_=hashlib.sha256(reminder.message_id.encode()).hexdigest()[:32],
    )


async def handle(services: Services, event: CloudEvent, decoded: Decoded) -> Result:
    data = decoded.data if isinstance(decoded.data, ReminderDue) else None
    if data is not None and data.user_id:
        return await _sweep(services, event, data)
    if _sweeping.locked():
        return Result("coalesced", detail={"reason": "a sweep is running in this instance"})
    await _sweeping.acquire()  # free, as checked: no await between the check and here
    try:
        result = await _sweep(services, event, data)
    except BaseException:
        _sweeping.release()
        raise
    # Held until its announcements are out too: that is the longer half of a sweep.
    return dataclasses.replace(result, settled=_sweeping.release)


async def _sweep(services: Services, event: CloudEvent, data: ReminderDue | None) -> Result:
    now = services.now()
    owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    limit = services.settings.sweep_limit if services.can_emit_many else 1
    outbox: list[Reminder] = []
    counts = {"sent": 0, "cancelled": 0, "failed": 0, "announced_late": 0, "left": 0}
    stop_claiming = time.monotonic() + SWEEP_BUDGET
    async for candidate in _due(services, data, now):
        if len(outbox) >= limit or time.monotonic() > stop_claiming:
            counts["left"] += 1
            continue
        if candidate.unannounced:
            # Sent by an earlier delivery that did not get its event out.
            outbox.append(candidate)
            counts["announced_late"] += 1
            continue
        outcome = await _deliver(services, candidate, owner, now)
        if isinstance(outcome, Reminder):
            outbox.append(outcome)
            counts["sent"] += 1
        elif outcome != "skipped":
            counts[outcome] += 1

    if counts["left"] and not services.can_emit_many:
        log.warning(
            "reminders left for later ticks: K_SINK is not set, so one delivery can "
            "announce only one reminder (its reply)",
            extra={"left": counts["left"]},
        )

    async def announced() -> None:
        for reminder in outbox:
            await _save(services, reminder, announced=True)

    events = tuple(_announcement(services, event, reminder) for reminder in outbox)
    return Result("swept", events=events, detail=counts, delivered=announced)
