"""send-reminder: on a tick (PingSource, OpenFaaS cron-connector) or `todo.reminder.due`,
send every due reminder exactly once and announce each (`todo.reminder.sent`, or
`todo.reminder.failed` with the reason when it cannot be delivered).

Exactly once: a reminder is claimed with a lease (compare-and-set) before sending, so
concurrent ticks never send it twice; it is marked sent right after. The only window left
is a crash between the hand-over and that mark: the reminder is then sent again after its
lease expires, with the same Message-ID (and Idempotency-Key for webhooks).

The announcements are never lost either: a sent (or failed) reminder stays in the due
index until its event is out (an outbox), and the next sweep emits what a crash left
behind, under the same id, derived from the reminder.

A failure stays with the reminder it happened to: one recipient that refuses for good,
fails for now or hangs never holds up anyone else's. Sends run concurrently (at most
`SENDS_AT_ONCE`); a refusal fails that reminder, a temporary failure retries it on its own
backoff (`reminders.retry_later`), and anything unexpected is a temporary failure of that
reminder too. Only a shared dependency that is down (the SMTP server) holds reminders
back: they keep their place, the rest of the sweep goes on, and the delivery answers 503
once what could be sent is sent and announced, so the broker retries the tick.

One instance runs one sweep at a time: a tick that finds a sweep running here answers at
once ("coalesced"); that sweep, or the next tick, covers what it would have done. A
reminder whose task is no longer open is cancelled, never sent. Without a sink (`K_SINK`)
or Dapr sidecar a delivery can reply with one event only, so it handles one reminder and
leaves the rest for the next tick (readiness says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from nextup import reminders, resilience
from nextup.contract import Context, Effect, Result
from nextup.envelope import CloudEvent
from nextup.errors import EventError, Unavailable
from nextup.events import (
    REMINDER_FAILED,
    REMINDER_SENT,
    ReminderDue,
    ReminderFailed,
    ReminderSent,
)
from nextup.handlers.shared import emitted
from nextup.notify import Message, PermanentFailure, RecipientUnavailable
from nextup.reminders import Reminder, ReminderStatus
from nextup.services import Services
from nextup.tasks import Task, TaskStatus

PAGE = 100
# A delivery must answer within its Trigger's timeout (PT30S), and announcing what it sent
# takes time too: after this many seconds a sweep claims nothing more and leaves the rest
# to the next tick. Sends in flight are bounded by their own timeouts.
SWEEP_BUDGET = 5.0
# Of the time left before the event's deadline (`resilience.deadline`, set by the
# runtime): claims are made only in the first part (also by sends queued behind
# SENDS_AT_ONCE, which SWEEP_BUDGET does not stop), and sends stop before the last part,
# which is kept for recording what became of each reminder (or giving its claim back) and
# announcing it.
CLAIM_SHARE = 0.4
RECORD_SHARE = 0.2
SENDS_AT_ONCE = 16
log = logging.getLogger("nextup.send_reminder")
_sweeping = asyncio.Lock()  # held by this instance's sweep over every user


async def _due(
    services: Services, data: ReminderDue | None, now: datetime
) -> AsyncIterator[Reminder]:
    """The reminders this delivery should look at: one task's, one user's, or everyone's."""
    store = services.store
    if data is not None and data.user_id:
        if data.task_id:
            found = [await services.db(store.get_reminder, data.user_id, data.task_id)]
        else:
            found = await services.db(store.list_reminders, data.user_id)
        for reminder in found:
            if reminder is not None and reminder.indexed and reminders.due_time(reminder) <= now:
                yield reminder
        return
    cursor = None
    while True:
        page = await services.db(store.due_reminders, now, limit=PAGE, cursor=cursor)
        for reminder in page.items:
            yield reminder
        cursor = page.cursor
        if cursor is None:
            return


async def _save(services: Services, reminder: Reminder) -> Reminder | None:
    """Write a change to a claimed reminder; None if someone else changed it meanwhile."""
    from nextup.store import Conflict

    try:
        return await services.db(services.store.save_reminder, reminder)
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


def _message(services: Services, reminder: Reminder, task: Task) -> Message:
    return Message(
        user_id=task.user_id,
        task_id=task.task_id,
        title=task.title,
        due_at=task.due_at.astimezone(task.zone()).isoformat() if task.due_at else None,
        remind_at=reminder.remind_at.isoformat(),
        message_id=reminders.message_id(reminder, services.settings.message_domain),
    )


class Sweep:
    """One delivery's pass over the due reminders."""

    def __init__(self, services: Services, ctx: Context, data: ReminderDue | None) -> None:
        self.services = services
        self.ctx = ctx
        self.data = data
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.limit = services.settings.sweep_limit if services.can_emit_many else 1
        self.outbox: list[Reminder] = []
        self.counts = dict.fromkeys(
            ("sent", "failed", "retrying", "waiting", "cancelled", "announced_late", "left"), 0
        )
        self.down: dict[str, Unavailable] = {}  # channel -> why its shared dependency is down
        self.gate = asyncio.Semaphore(SENDS_AT_ONCE)
        # Set by run() from the event's deadline (None: there is none).
        self.claim_until: float | None = None
        self.stop_sending: float | None = None

    async def run(self) -> Result:
        start, deadline = time.monotonic(), resilience.deadline()
        stop_claiming = start + SWEEP_BUDGET
        if deadline is not None:
            left = max(0.0, deadline - start)
            self.claim_until = start + left * CLAIM_SHARE
            self.stop_sending = start + left * (1 - RECORD_SHARE)
            stop_claiming = min(stop_claiming, self.claim_until)
        sends: list[asyncio.Task[None]] = []
        async for candidate in _due(self.services, self.data, self.ctx.now):
            if len(self.outbox) + len(sends) >= self.limit or time.monotonic() > stop_claiming:
                self.counts["left"] += 1
            elif candidate.unannounced:
                # Sent, or failed, by an earlier delivery that did not get its event out.
                self.outbox.append(candidate)
                self.counts["announced_late"] += 1
            else:
                sends.append(asyncio.create_task(self._one(candidate)))
        for outcome in await asyncio.gather(*sends, return_exceptions=True):
            if isinstance(outcome, BaseException):  # the store: nothing can be recorded
                raise outcome
        if self.counts["left"] and not self.services.can_emit_many:
            log.warning(
                "reminders left for later ticks: K_SINK is not set, so one delivery can "
                "announce only one reminder (its reply)",
                extra={"left": self.counts["left"]},
            )
        outbox = list(self.outbox)

        async def announced() -> None:
            for reminder in outbox:
                await _save(self.services, reminder.model_copy(update={"announced": True}))

        down = next(iter(self.down.values()), None)
        return Result(
            "swept",
            events=tuple(self._announcement(reminder) for reminder in outbox),
            detail=self.counts,
            delivered=announced,
            unavailable=down,
        )

    async def _one(self, candidate: Reminder) -> None:
        async with self.gate:
            await self._deliver(candidate)

    async def _deliver(self, candidate: Reminder) -> None:
        """Claim one pending reminder and send it; whatever becomes of it is stored. Past
        the time for claiming (a send ahead of it took long), it is left for the next
        tick unclaimed."""
        services, store = self.services, self.services.store
        if self.claim_until is not None and time.monotonic() > self.claim_until:
            self.counts["left"] += 1
            return
        claimed = await services.db(
            store.claim_reminder,
            candidate.user_id,
            candidate.task_id,
            owner=self.owner,
            # The lease runs from the claim, not from the sweep's start: a long sweep would
            # otherwise hand out leases that have already run out.
            now=max(self.ctx.now, services.now()),
            lease=services.settings.reminder_lease,
        )
        if claimed is None:
            return  # another sweep has it, or it changed
        task = await services.db(store.get_task, claimed.user_id, claimed.task_id)
        if task is None or task.status is not TaskStatus.OPEN or task.due_at != claimed.due_at:
            cancelled = claimed.model_copy(
                update={"status": ReminderStatus.CANCELLED, "lease_until": None}
            )
            if await _save(services, cancelled):
                self.counts["cancelled"] += 1
            return
        outcome = await self._send(claimed, task)
        if outcome is None:
            return
        saved = await _save(services, outcome)
        if saved is None:
            return
        if saved.status is ReminderStatus.PENDING:
            self.counts["retrying"] += 1
        else:
            self.counts["sent" if saved.status is ReminderStatus.SENT else "failed"] += 1
            self.outbox.append(saved)

    async def _send(self, claimed: Reminder, task: Task) -> Reminder | None:
        """The claimed reminder as it stands after trying to send it; None when it was
        held back (its lease given back) because what it needs is down."""
        services = self.services
        now = services.now
        channel: str | None = None
        try:
            # Sends stop in time to record their outcome: one cut short by the deadline
            # is given back below like one whose dependency is down (the delivery answers
            # 503), under the event's own deadline.
            with self._sending():
                if "backend" in self.down and not (
                    task.notify and (task.notify.email or task.notify.webhook)
                ):
                    raise self.down["backend"]
                channel, address = await _recipient(services, task)
                if channel in self.down:
                    raise self.down[channel]
                message = _message(services, claimed, task)
                if channel == "webhook":
                    await services.webhook(address, message)
                else:
                    await services.mail(address, message)
        except PermanentFailure as exc:
            return self._failed(claimed, channel, str(exc))
        except RecipientUnavailable as exc:
            retried = reminders.retry_later(
                claimed, error=str(exc), now=now(), after=exc.retry_after
            )
            return retried.model_copy(update={"channel": channel})
        except Unavailable as exc:
            if exc.field == "store":
                raise  # nothing could be recorded: the whole delivery waits
            # The SMTP server, or the todo app's API that has the address, is down: every
            # reminder that needs it waits (keeping its place), the others go on.
            self.down[channel or "backend"] = exc
            self.counts["waiting"] += 1
            await _save(services, reminders.release(claimed))
            return None
        except EventError as exc:  # a client's mistake the sender only now can see
            return self._failed(claimed, channel, exc.error)
        except Exception as exc:  # a bug: this reminder's, never everyone's
            log.exception("sending a reminder failed", extra={"task": claimed.task_id})
            return reminders.retry_later(
                claimed, error=f"internal error: {type(exc).__name__}", now=now()
            )
        return reminders.mark_sent(
            claimed,
            channel=channel,
            message_id=reminders.message_id(claimed, services.settings.message_domain),
            sent_at=now(),
        )

    def _sending(self) -> contextlib.AbstractContextManager[object]:
        if self.stop_sending is None:
            return contextlib.nullcontext()
        return resilience.deadline_at(self.stop_sending)

    def _failed(self, claimed: Reminder, channel: str | None, error: str) -> Reminder:
        failed = reminders.mark_failed(claimed, error=error, failed_at=self.services.now())
        return failed.model_copy(update={"channel": channel})

    def _announcement(self, reminder: Reminder) -> CloudEvent:
        """The reminder's `todo.reminder.sent` or `.failed`, the same whichever delivery
        emits it (its id comes from the reminder)."""
        identity = reminders.message_id(reminder, self.services.settings.message_domain)
        if reminder.status is ReminderStatus.FAILED:
            assert reminder.failed_at is not None
            data: ReminderSent | ReminderFailed = ReminderFailed(
                user_id=reminder.user_id,
                task_id=reminder.task_id,
                channel=reminder.channel,
                error=reminder.error or "failed",
                attempts=reminder.attempts,
                remind_at=reminder.remind_at,
                due_at=reminder.due_at,
                failed_at=reminder.failed_at,
            )
            type_, purpose = REMINDER_FAILED, "failed"
        else:
            assert reminder.channel in ("email", "webhook") and reminder.sent_at
            data = ReminderSent(
                user_id=reminder.user_id,
                task_id=reminder.task_id,
                channel=reminder.channel,
                message_id=reminder.message_id or identity,
                remind_at=reminder.remind_at,
                due_at=reminder.due_at,
                sent_at=reminder.sent_at,
            )
            type_, purpose = REMINDER_SENT, "sent"
        digest = hashlib.sha256(
            identity.encode() if purpose == "sent" else f"{identity}\0{purpose}".encode()
        )
        return emitted(
            self.ctx,
            type_,
            data,
            purpose=purpose,
            subject=reminder.task_id,
            id_=digest.hexdigest()[:32],
        )


async def _handle(services: Services, ctx: Context) -> Result:
    data = ctx.data if isinstance(ctx.data, ReminderDue) else None
    if data is not None and data.user_id:
        return await Sweep(services, ctx, data).run()
    if _sweeping.locked():
        return Result("coalesced", detail={"reason": "a sweep is running in this instance"})
    await _sweeping.acquire()  # free, as checked: no await between the check and here
    try:
        result = await Sweep(services, ctx, None).run()
    except BaseException:
        _sweeping.release()
        raise
    # Held until its announcements are out too: that is the longer half of a sweep.
    return dataclasses.replace(result, settled=_sweeping.release)


handle = Effect(_handle)
