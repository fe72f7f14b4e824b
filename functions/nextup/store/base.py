"""The typed store: tasks, reminders and receipts over any item-level `Backend`.

Every guarantee is implemented here, once, on top of three backend primitives (a
consistent get, a conditional put, a due-ordered query):

- Task ids are global: `create_task` first claims the id with a put-if-absent ownership
  item, so another user naming the task gets `OwnedByOther` (403) and never its data.
- Every write after the first is a compare-and-set on ``version``: of many concurrent
  writers from the same version exactly one wins, the others get `Conflict`.
- A reminder is in the due index only while pending; `claim_reminder` leases it with a
  compare-and-set, so one sender wins however many race.
- Receipts expire: an expired receipt reads as absent whatever the backend still holds
  (DynamoDB's TTL deletes lazily, moto never), and may be replaced.

No method reaches another user's items: each takes the user (or receipt scope) and
builds keys inside that user's partition (see `nextup.store.layout`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from nextup import reminders
from nextup.fields import STORED, Model
from nextup.reminders import Reminder
from nextup.store import layout
from nextup.store.errors import (
    Conflict,
    InvalidCursor,
    OwnedByOther,
    StoreError,
    StoreUnavailable,
)
from nextup.store.items import Backend, Item
from nextup.store.layout import SYSTEM_SCOPE, as_utc
from nextup.tasks import Task, TaskStatus

__all__ = [
    "SYSTEM_SCOPE",
    "Backend",
    "Conflict",
    "InvalidCursor",
    "Item",
    "OwnedByOther",
    "Page",
    "Receipt",
    "Store",
    "StoreError",
    "StoreUnavailable",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_PAGE = 1000
# How many items `list_tasks` asks the backend for at a time.
LIST_PAGE = 200
# put_receipt re-reads after a lost put-if-absent; more rounds than this means churn.
RECEIPT_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results; pass `cursor` back for the next (None: that was the last)."""

    items: list[T]
    cursor: str | None = None


class Receipt(Model):
    """The outcome of handling an event, kept to answer its redeliveries the same way."""

    key: str
    status: int
    reply: dict[str, Any] | None = None
    created_at: datetime
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return as_utc(self.expires_at) <= as_utc(now)


def _now() -> datetime:
    return datetime.now(UTC)


def _sort_key(task: Task) -> tuple[bool, datetime, str]:
    due = as_utc(task.due_at) if task.due_at is not None else datetime.min.replace(tzinfo=UTC)
    return (task.due_at is None, due, task.task_id)


class Store:
    """Typed, user-scoped access to the single table. Thread-safe; methods block."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        # Callers may run a local store's calls inline; network calls belong in a thread.
        self.local = backend.local

    # -- lifecycle -----------------------------------------------------------------------

    def init(self) -> None:
        """Create the table or schema. Idempotent: safe to run on every deploy."""
        self._backend.init()

    def ping(self) -> None:
        """Raise StoreUnavailable (with what to do about it) unless the store is usable."""
        self._backend.ping()

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- item <-> model ------------------------------------------------------------------

    def _load(self, model: type[M], item: Item) -> M:
        data = dict(item.data)
        if "version" in model.model_fields:
            data["version"] = item.version
        try:
            # As written, not as the rules for new input now say (see `fields.STORED`).
            return model.model_validate(data, context=STORED)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise StoreError(f"stored item {item.pk!r}/{item.sk!r} is unreadable: {exc}") from exc

    def _write(
        self,
        pk: str,
        sk: str,
        model: BaseModel,
        *,
        expect: int,
        due: str | None = None,
        expires_at: int | None = None,
    ) -> bool:
        """Conditional write of `model` at version ``expect + 1`` (expect 0: if absent)."""
        data = model.model_dump(mode="json", exclude={"version"})
        item = Item(pk, sk, data, expect + 1, due=due, expires_at=expires_at)
        return self._backend.put(item, expect_version=expect)

    # -- ownership -----------------------------------------------------------------------

    def owner_of(self, task_id: str) -> str | None:
        """The user who owns the global task id, or None if nobody has created it."""
        item = self._backend.get(layout.owner_pk(task_id), layout.OWNER_SK)
        return None if item is None else str(item.data["user_id"])

    def _claim_id(self, user_id: str, task_id: str) -> None:
        """Make `user_id` the owner of `task_id` unless someone else already is."""
        # Put first, read only when it was already claimed: one round trip for a new id.
        claim = Item(layout.owner_pk(task_id), layout.OWNER_SK, {"user_id": user_id}, 1)
        if self._backend.put(claim, expect_version=0):
            return
        if self.owner_of(task_id) != user_id:
            raise OwnedByOther(task_id)

    # -- tasks ---------------------------------------------------------------------------

    def get_task(self, user_id: str, task_id: str) -> Task | None:
        item = self._backend.get(layout.user_pk(user_id), layout.task_sk(task_id))
        return None if item is None else self._load(Task, item)

    def create_task(self, task: Task) -> tuple[Task, bool]:
        """Store a new task once: (the stored task, whether this call created it).

        Raises OwnedByOther if another user owns the id. A redelivered create gets the
        stored task back unchanged, so replaying an event never overwrites later changes.
        """
        pk, sk = layout.user_pk(task.user_id), layout.task_sk(task.task_id)
        self._claim_id(task.user_id, task.task_id)
        if self._write(pk, sk, task, expect=0):
            return task.model_copy(update={"version": 1}), True
        existing = self.get_task(task.user_id, task.task_id)
        if existing is None:  # tasks are never deleted as items, so this is a broken backend
            raise StoreError(f"task {task.task_id!r} exists and yet cannot be read")
        return existing, False

    def save_task(self, task: Task) -> Task:
        """Compare-and-set a stored task: written only if the stored version is
        `task.version`. Returns it with the new version; raises Conflict if stale."""
        if task.version < 1:
            raise ValueError("save_task updates a stored task (version >= 1); use create_task")
        pk, sk = layout.user_pk(task.user_id), layout.task_sk(task.task_id)
        if not self._write(pk, sk, task, expect=task.version):
            raise Conflict(f"task {task.task_id!r} changed since version {task.version}")
        return task.model_copy(update={"version": task.version + 1})

    def list_tasks(self, user_id: str, *, status: TaskStatus | str | None = None) -> list[Task]:
        """All of a user's tasks (optionally of one status): by due time, undated last."""
        pk = layout.user_pk(user_id)
        wanted = None if status is None else TaskStatus(status)
        tasks: list[Task] = []
        cursor: str | None = None
        while True:
            items, cursor = self._backend.query(pk, layout.TASK, limit=LIST_PAGE, cursor=cursor)
            tasks.extend(self._load(Task, item) for item in items)
            if cursor is None:
                break
        if wanted is not None:
            tasks = [task for task in tasks if task.status is wanted]
        return sorted(tasks, key=_sort_key)

    # -- reminders -----------------------------------------------------------------------

    def get_reminder(self, user_id: str, task_id: str) -> Reminder | None:
        item = self._backend.get(layout.user_pk(user_id), layout.reminder_sk(task_id))
        return None if item is None else self._load(Reminder, item)

    def save_reminder(self, reminder: Reminder) -> Reminder:
        """Version 0 creates the reminder if absent, any other version compare-and-sets.

        Raises Conflict if stale, and OwnedByOther when creating a reminder for another
        user's task. Pending reminders enter the due index; others leave it.
        """
        pk, sk = layout.user_pk(reminder.user_id), layout.reminder_sk(reminder.task_id)
        if reminder.version == 0:
            owner = self.owner_of(reminder.task_id)
            if owner is not None and owner != reminder.user_id:
                raise OwnedByOther(reminder.task_id)
        due = None
        if reminder.indexed:
            due = layout.due_key(reminder.remind_at, reminder.user_id, reminder.task_id)
        if not self._write(pk, sk, reminder, expect=reminder.version, due=due):
            raise Conflict(
                f"reminder of task {reminder.task_id!r} changed since version {reminder.version}"
            )
        return reminder.model_copy(update={"version": reminder.version + 1})

    def due_reminders(
        self, until: datetime, *, limit: int = 100, cursor: str | None = None
    ) -> Page[Reminder]:
        """Reminders in the due index (pending, or sent and not yet announced) with
        remind_at <= until, of every user, oldest first.

        The only cross-user read: each reminder carries its own user_id. Page through with
        the returned cursor and the same `until`; every due reminder comes exactly once
        (unless it changes meanwhile). The index may lag a write by a moment on DynamoDB,
        so claim before sending: `claim_reminder` reads the reminder consistently.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
        items, next_cursor = self._backend.query_due(
            layout.due_bound(until), limit=limit, cursor=cursor
        )
        found = [
            self._load(Reminder, item) for item in items if item.sk.startswith(layout.REMINDER)
        ]
        return Page(found, next_cursor)

    def claim_reminder(
        self, user_id: str, task_id: str, *, owner: str, now: datetime, lease: timedelta
    ) -> Reminder | None:
        """Lease a due reminder to `owner` until ``now + lease``; None if it is not
        claimable now (not due, not pending, leased) or another claimer won the race."""
        current = self.get_reminder(user_id, task_id)
        if current is None:
            return None
        claimed = reminders.claim(current, owner=owner, now=as_utc(now), lease=lease)
        if claimed is None:
            return None
        try:
            return self.save_reminder(claimed)
        except Conflict:
            return None

    # -- idempotency receipts ------------------------------------------------------------

    def get_receipt(self, scope: str, key: str, *, now: datetime | None = None) -> Receipt | None:
        """The unexpired receipt for event `key` in `scope` (a user id or SYSTEM_SCOPE)."""
        item = self._backend.get(layout.scope_pk(scope), layout.receipt_sk(key))
        if item is None:
            return None
        receipt = self._load(Receipt, item)
        return None if receipt.expired(now or _now()) else receipt

    def put_receipt(self, scope: str, receipt: Receipt, *, now: datetime | None = None) -> Receipt:
        """Record `receipt` unless an unexpired one exists; return the one that is stored.

        When two handlers of the same event race, both get the winner's receipt back and
        can answer with it. An expired receipt is replaced as if absent.
        """
        pk, sk = layout.scope_pk(scope), layout.receipt_sk(receipt.key)
        expires_at = math.ceil(as_utc(receipt.expires_at).timestamp())
        expect = 0  # the usual case, a first receipt: one conditional put
        for _ in range(RECEIPT_ROUNDS):
            if self._write(pk, sk, receipt, expect=expect, expires_at=expires_at):
                return receipt
            item = self._backend.get(pk, sk)
            if item is None:
                expect = 0
                continue
            existing = self._load(Receipt, item)
            if not existing.expired(now or _now()):
                return existing
            expect = item.version
        raise Conflict(f"receipt {receipt.key!r} keeps changing")

    def purge_expired(self, now: datetime) -> int:
        """Delete expired receipts; how many. DynamoDB's TTL does this itself (returns 0)."""
        return self._backend.purge_expired(math.floor(as_utc(now).timestamp()))
