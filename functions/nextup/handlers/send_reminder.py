"""send-reminder: on a tick (PingSource, OpenFaaS cron-connector) or `todo.reminder.due`,
send every due reminder exactly once and announce each (`todo.reminder.sent`, or
`todo.reminder.failed` with the reason when it cannot be delivered).

Exactly once: a reminder is claimed with a lease (compare-and-set) before sending, so
concurrent ticks never send it twice; what became of it is recorded soon after (with
others: below). The only window left is a crash between the hand-over and that record: the
reminder is then sent again after its lease expires, with the same Message-ID (and
Idempotency-Key for webhooks).

The announcements are never lost either: a sent (or failed) reminder stays in the due
index until its event is out (an outbox), and the next sweep emits what a crash left
behind, under the same id, derived from the reminder.

At scale, a sweep costs a few store calls per hundred reminders, not a few per reminder:
one query page of due reminders across users is claimed in one call (`claim_reminders`:
a compare-and-set each, so one that another sweep claimed, or that changed since the page
was read, is left out and only it), their tasks read in one `load`, what became of them
recorded a hundred at a time as the sends finish, or every `RECORD_EVERY` seconds
(`save_each`, each on the version its claim wrote), and the announced ones marked so in
batches. Pages are read only while the sweep can take more, so reminders not yet due, or
beyond its limit, cost nothing. Claims run about one batch ahead of the sends, so a lease
is not spent waiting in a queue.

A failure stays with the reminder it happened to: one recipient that refuses for good,
fails for now or hangs never holds up anyone else's. Sends run concurrently (at most
`SENDS_AT_ONCE`); a refusal fails that reminder, a temporary failure retries it on its own
backoff (`reminders.retry_later`), and anything unexpected is a temporary failure of that
reminder too. Only a shared dependency that is down (the SMTP server) holds reminders
back: they keep their place, the rest of the sweep goes on, and the delivery answers 503
once what could be sent is sent and announced, so the broker retries the tick. The store
is a shared dependency too: when it fails, what was claimed is still sent, and the
delivery answers 503.

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
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from typing import TypeVar

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
from nextup.store import task_ref
from nextup.tasks import Task, TaskStatus

PAGE = 100
# Reminders claimed, tasks read, outcomes recorded or announcements marked per store call:
# the most one call takes (DynamoDB: 100 writes in a transaction, 100 keys in a batch get).
BATCH = 100
# A delivery must answer within its Trigger's timeout (PT30S), and announcing what it sent
# takes time too: after this many seconds a sweep claims nothing more and leaves the rest
# to the next tick. Sends in flight are bounded by their own timeouts.
SWEEP_BUDGET = 5.0
# Of the time left before the event's deadline (`resilience.deadline`, set by the
# runtime): sends start only in the first part (a claimed reminder whose turn comes later
# is given back), and sends stop before the last part, which is kept for recording what
# became of each reminder (or giving its claim back) and announcing it.
CLAIM_SHARE = 0.4
RECORD_SHARE = 0.2
SENDS_AT_ONCE = 16
# Outcomes are recorded once a batch is waiting, or this many seconds after the last
# record: a crash between a hand-over and its record resends (same Message-ID) at most
# a batch, or this long's sends.
RECORD_EVERY = 0.5
log = logging.getLogger("nextup.send_reminder")
_sweeping = asyncio.Lock()  # held by this instance's sweep over every user
T = TypeVar("T")

# What a recorded outcome counts as: a send tried (sent, failed or retrying, by its
# status), a cancellation, or a claim given back (counted when it was decided).
TRIED, CANCELLED, RELEASED = "tried", "cancelled", "released"


async def _due(
    services: Services, data: ReminderDue | None, now: datetime
) -> AsyncIterator[list[Reminder]]:
    """The reminders this delivery should look at, a page at a time: one task's, one
    user's, or everyone's."""
    store = services.store
    if data is not None and data.user_id:
        if data.task_id:
            found = [await services.db(store.get_reminder, data.user_id, data.task_id)]
        else:
            found = await services.db(store.list_reminders, data.user_id)
        yield [
            reminder
            for reminder in found
            if reminder is not None and reminder.indexed and reminders.due_time(reminder) <= now
        ]
        return
    cursor = None
    while True:
        page = await services.db(store.due_reminders, now, limit=PAGE, cursor=cursor)
        yield page.items
        cursor = page.cursor
        if cursor is None:
            return


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
    """One delivery's pass over the due reminders: a claimer (`_claim`) hands claimed
    reminders with their tasks to `SENDS_AT_ONCE` senders (`_sender`) through a queue of
    about one batch, and outcomes are recorded a batch at a time (`_record`)."""

    def __init__(self, services: Services, ctx: Context, data: ReminderDue | None) -> None:
        self.services = services
        self.ctx = ctx
        self.data = data
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.limit = services.settings.sweep_limit if services.can_emit_many else 1
        self.taken = 0  # reminders this sweep took on: to claim, or to announce late
        self.outbox: list[Reminder] = []
        self.counts = dict.fromkeys(
            ("sent", "failed", "retrying", "waiting", "cancelled", "announced_late", "left"), 0
        )
        self.down: dict[str, Unavailable] = {}  # channel -> why its shared dependency is down
        # Claimed reminders with their tasks, waiting for a sender (None: stop).
        self.claimed: asyncio.Queue[tuple[Reminder, Task] | None] = asyncio.Queue(BATCH)
        # What became of claimed reminders, not yet recorded: (reminder, what it counts as).
        self.outcomes: list[tuple[Reminder, str]] = []
        self.errors: list[Exception] = []  # the store's: nothing more could be recorded
        self.sent_all = asyncio.Event()  # the senders are done: the recorder stops
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
        senders = [asyncio.create_task(self._sender()) for _ in range(SENDS_AT_ONCE)]
        recorder = asyncio.create_task(self._recorder())
        try:
            await self._claim(stop_claiming)
        except Exception as exc:  # the store: what was claimed is still sent and recorded
            self.errors.append(exc)
        except BaseException:
            for worker in (*senders, recorder):
                worker.cancel()
            raise
        for _ in senders:
            await self.claimed.put(None)
        await asyncio.gather(*senders)
        self.sent_all.set()
        await recorder  # records what is left
        if self.errors:
            raise self.errors[0]
        if self.counts["left"] and not self.services.can_emit_many:
            log.warning(
                "reminders left for later ticks: K_SINK is not set, so one delivery can "
                "announce only one reminder (its reply)",
                extra={"left": self.counts["left"]},
            )
        outbox = list(self.outbox)
        services = self.services

        async def announced() -> None:
            for first in range(0, len(outbox), BATCH):
                marked = [r.model_copy(update={"announced": True}) for r in outbox[first:][:BATCH]]
                # One changed meanwhile (None) is announced again by a later sweep.
                await services.db(services.store.save_each, marked)

        down = next(iter(self.down.values()), None)
        return Result(
            "swept",
            events=tuple(self._announcement(reminder) for reminder in outbox),
            detail=self.counts,
            delivered=announced,
            unavailable=down,
        )

    async def _claim(self, stop_claiming: float) -> None:
        """Read the due reminders page by page and claim each page's in one store call,
        as long as the sweep may take more; the senders' queue holds the claimer back, so
        claims run about one batch ahead of the sends."""
        async for page in _due(self.services, self.data, self.ctx.now):
            batch: list[Reminder] = []
            passed = 0
            for candidate in page:
                if self.taken >= self.limit or time.monotonic() > stop_claiming:
                    passed += 1
                    continue
                self.taken += 1
                if candidate.unannounced:
                    # Sent, or failed, by an earlier delivery that did not get its event out.
                    self.outbox.append(candidate)
                    self.counts["announced_late"] += 1
                else:
                    batch.append(candidate)
            for first in range(0, len(batch), BATCH):
                await self._claim_batch(batch[first:][:BATCH])
            if passed or self.taken >= self.limit or time.monotonic() > stop_claiming:
                # The rest is the next tick's: reading on would cost a page (a Query per
                # index shard on DynamoDB) only to count it, so `left` counts what this
                # page had left.
                self.counts["left"] += passed
                return

    async def _claim_batch(self, candidates: list[Reminder]) -> None:
        """Claim the candidates in one store call, read their tasks in one more, cancel
        those whose task is no longer open, and queue the rest for the senders. Past the
        time for claiming (sends ahead of them took long), they are left for the next
        tick unclaimed."""
        services, store = self.services, self.services.store
        if self.claim_until is not None and time.monotonic() > self.claim_until:
            self.counts["left"] += len(candidates)
            return
        claimed = await services.db(
            store.claim_reminders,
            candidates,
            owner=self.owner,
            # The lease runs from the claim, not from the sweep's start: a long sweep would
            # otherwise hand out leases that have already run out.
            now=max(self.ctx.now, services.now()),
            lease=services.settings.reminder_lease,
        )
        if not claimed:
            return  # other sweeps have them, or they changed
        tasks = await services.db(store.load, [task_ref(r.user_id, r.task_id) for r in claimed])
        for reminder, task in zip(claimed, tasks, strict=True):
            if task is None or task.status is not TaskStatus.OPEN or task.due_at != reminder.due_at:
                cancelled = {"status": ReminderStatus.CANCELLED, "lease_until": None}
                await self._done(reminder.model_copy(update=cancelled), CANCELLED)
            else:
                await self.claimed.put((reminder, task))

    async def _sender(self) -> None:
        """Send claimed reminders one after another until told to stop. A reminder whose
        turn comes after the time for claiming is given back unsent, as if never claimed."""
        while (job := await self.claimed.get()) is not None:
            reminder, task = job
            if self.claim_until is not None and time.monotonic() > self.claim_until:
                self.counts["left"] += 1
                outcome = (reminders.release(reminder), RELEASED)
            else:
                outcome = await self._guarded(self._send(reminder, task))
            if outcome is not None:
                await self._guarded(self._done(*outcome))

    async def _guarded(self, step: Awaitable[T]) -> T | None:
        """A step whose store failure ends nothing else: kept to answer with (503), the
        step's reminder left to its lease."""
        try:
            return await step
        except Exception as exc:
            self.errors.append(exc)
            return None

    async def _done(self, reminder: Reminder, counted: str) -> None:
        """What became of a claimed reminder, recorded with others once a batch is full."""
        self.outcomes.append((reminder, counted))
        if len(self.outcomes) >= BATCH:
            await self._record()

    async def _recorder(self) -> None:
        """Record what is waiting every `RECORD_EVERY` seconds, and once more at the end."""
        while not self.sent_all.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sent_all.wait(), RECORD_EVERY)
            await self._guarded(self._record())
        # What the last senders left while the record above was under way.
        await self._guarded(self._record())

    async def _record(self) -> None:
        """Write the outcomes so far in one store call, each on the version its claim wrote:
        one whose lease another sender took over meanwhile is not written (and not counted
        or announced)."""
        batch, self.outcomes = self.outcomes, []
        if not batch:
            return
        saved = await self.services.db(self.services.store.save_each, [r for r, _ in batch])
        for (_, counted), stored in zip(batch, saved, strict=True):
            if stored is None or counted == RELEASED:
                continue
            if counted == CANCELLED:
                self.counts["cancelled"] += 1
            elif stored.status is ReminderStatus.PENDING:
                self.counts["retrying"] += 1
            else:
                self.counts["sent" if stored.status is ReminderStatus.SENT else "failed"] += 1
                self.outbox.append(stored)

    async def _send(self, claimed: Reminder, task: Task) -> tuple[Reminder, str]:
        """The claimed reminder as it stands after trying to send it (TRIED), or with its
        lease given back (RELEASED) when what it needs is down."""
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
            return self._failed(claimed, channel, str(exc)), TRIED
        except RecipientUnavailable as exc:
            retried = reminders.retry_later(
                claimed, error=str(exc), now=now(), after=exc.retry_after
            )
            return retried.model_copy(update={"channel": channel}), TRIED
        except Unavailable as exc:
            if exc.field == "store":
                raise  # nothing could be recorded: the whole delivery waits
            # The SMTP server, or the todo app's API that has the address, is down: every
            # reminder that needs it waits (keeping its place), the others go on.
            self.down[channel or "backend"] = exc
            self.counts["waiting"] += 1
            return reminders.release(claimed), RELEASED
        except EventError as exc:  # a client's mistake the sender only now can see
            return self._failed(claimed, channel, exc.error), TRIED
        except Exception as exc:  # a bug: this reminder's, never everyone's
            log.exception("sending a reminder failed", extra={"task": claimed.task_id})
            retried = reminders.retry_later(
                claimed, error=f"internal error: {type(exc).__name__}", now=now()
            )
            return retried, TRIED
        sent = reminders.mark_sent(
            claimed,
            channel=channel,
            message_id=reminders.message_id(claimed, services.settings.message_domain),
            sent_at=now(),
        )
        return sent, TRIED

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
