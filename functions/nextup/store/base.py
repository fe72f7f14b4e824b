"""The typed store: tasks, reminders and receipts over any item-level `Backend`.

Every guarantee is implemented here, once, on top of a few backend primitives (a
consistent get and batch get, a conditional put, an atomic commit of several conditional
puts, many conditional puts each on its own, a due-ordered query):

- Task ids are the user's own: every task and reminder lives in its user's partition, so
  no user can read, claim, block or probe another user's ids, whatever they send.
- Every write after the first is a compare-and-set on ``version``: of many concurrent
  writers from the same version exactly one wins, the others get `Conflict`.
- `load` reads what one event needs in one round trip and `commit` writes its receipt and
  every effect it guards together, all or nothing (one SQLite transaction, one DynamoDB
  `TransactWriteItems`): a lost condition means another delivery got there first.
- A reminder is in the due index only while pending (or waiting for its announcement);
  `claim_reminders` leases many with a compare-and-set each, in one round trip, so one
  sender wins each however many race; `save_each` records many outcomes the same way.
- Receipts are global, one per event `source` + `id`, and expire: an expired receipt
  reads as expired whatever the backend still holds (DynamoDB's TTL deletes lazily, moto
  never), and is replaced at its version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from nextup import reminders
from nextup.fields import STORED, Model
from nextup.reminders import Reminder
from nextup.store import layout
from nextup.store.errors import (
    CommitConflict,
    Conflict,
    InvalidCursor,
    StoreError,
    StoreNotReady,
    StoreUnavailable,
)
from nextup.store.items import MAX_COMMIT, Backend, Item, Write
from nextup.store.layout import as_utc
from nextup.tasks import Task, TaskStatus

__all__ = [
    "Backend",
    "CommitConflict",
    "Conflict",
    "InvalidCursor",
    "Item",
    "Page",
    "Receipt",
    "Ref",
    "Store",
    "StoreError",
    "StoreNotReady",
    "StoreUnavailable",
    "receipt_ref",
    "reminder_ref",
    "task_ref",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_PAGE = 1000
# How many items `list_tasks` asks the backend for at a time.
LIST_PAGE = 200


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results; pass `cursor` back for the next (None: that was the last)."""

    items: list[T]
    cursor: str | None = None


class Receipt(Model):
    """How an event was answered, kept to answer its redeliveries the same way.

    `digest` fingerprints what the event asked for (its type and validated data), so a
    second event reusing a `source` + `id` for something else is told apart from a
    redelivery. `events` are what it emitted; `unsent` while they are not known to have
    reached the sink (the receipt is committed before they go out), so a redelivery sends
    them again and nothing emitted is lost to a crash or a sink that was down."""

    key: str
    digest: str = ""
    status: int
    body: dict[str, Any] | None = None
    events: list[dict[str, Any]] = Field(default=[])  # see fields.Model
    unsent: bool = False
    created_at: datetime
    expires_at: datetime
    version: int = Field(default=0, ge=0)

    def expired(self, now: datetime) -> bool:
        return as_utc(self.expires_at) <= as_utc(now)


@dataclass(frozen=True, slots=True)
class Ref(Generic[M]):
    """Where a model lives: what `Store.load` reads."""

    model: type[M]
    pk: str
    sk: str


def task_ref(user_id: str, task_id: str) -> Ref[Task]:
    return Ref(Task, layout.user_pk(user_id), layout.task_sk(task_id))


def reminder_ref(user_id: str, task_id: str) -> Ref[Reminder]:
    return Ref(Reminder, layout.user_pk(user_id), layout.reminder_sk(task_id))


def receipt_ref(key: str) -> Ref[Receipt]:
    return Ref(Receipt, layout.receipt_pk(key), layout.RECEIPT_SK)


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
        self.name = backend.name

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

    def _item(self, model: BaseModel) -> Item:
        """A model as the item it is stored as, at its next version."""
        if isinstance(model, Task):
            ref: Ref[Any] = task_ref(model.user_id, model.task_id)
            due, expires_at = None, None
        elif isinstance(model, Reminder):
            ref = reminder_ref(model.user_id, model.task_id)
            due = (
                layout.due_key(reminders.due_time(model), model.user_id, model.task_id)
                if model.indexed
                else None
            )
            expires_at = None
        elif isinstance(model, Receipt):
            ref = receipt_ref(model.key)
            due, expires_at = None, math.ceil(as_utc(model.expires_at).timestamp())
        else:
            raise TypeError(f"the store keeps no {type(model).__name__}")
        data = model.model_dump(mode="json", exclude={"version"})
        version = model.version  # type: ignore[attr-defined]
        return Item(ref.pk, ref.sk, data, version + 1, due=due, expires_at=expires_at)

    # -- one event's unit of work --------------------------------------------------------

    def load(self, refs: Sequence[Ref[Any]]) -> list[Any]:
        """The model at each ref (None where absent), read consistently in one round trip."""
        items = self._backend.get_many([(ref.pk, ref.sk) for ref in refs])
        return [
            None if item is None else self._load(ref.model, item)
            for ref, item in zip(refs, items, strict=True)
        ]

    def commit(self, models: Sequence[BaseModel]) -> list[Any]:
        """Write every model at its next version, each on the condition that the stored
        one is still at `model.version` (0: absent), all or nothing. The models as stored;
        `CommitConflict` (nothing written) if any condition did not hold."""
        if not 1 <= len(models) <= MAX_COMMIT:
            raise ValueError(f"a commit writes 1 to {MAX_COMMIT} items")
        items = [self._item(model) for model in models]
        if len({(item.pk, item.sk) for item in items}) != len(items):
            raise ValueError("a commit writes each item once")
        self._backend.commit(
            [Write(item, item.version - 1) for item in items]  # expect the version read
        )
        return [
            model.model_copy(update={"version": item.version})
            for model, item in zip(models, items, strict=True)
        ]

    def save_each(self, models: Sequence[M]) -> list[M | None]:
        """Write each model at its next version on its own condition (the stored one is
        still at `model.version`; 0: absent), in one round trip unless writers race for
        the same items. Not all or nothing: each model as stored, or None where another
        writer got there first. What a sweep writes for many reminders at once."""
        if len(models) > MAX_COMMIT:
            raise ValueError(f"save_each writes at most {MAX_COMMIT} items")
        if not models:
            return []
        items = [self._item(model) for model in models]
        if len({(item.pk, item.sk) for item in items}) != len(items):
            raise ValueError("save_each writes each item once")
        written = self._backend.put_many([Write(item, item.version - 1) for item in items])
        return [
            model.model_copy(update={"version": item.version}) if ok else None
            for model, item, ok in zip(models, items, written, strict=True)
        ]

    # -- tasks ---------------------------------------------------------------------------

    def get_task(self, user_id: str, task_id: str) -> Task | None:
        item = self._backend.get(layout.user_pk(user_id), layout.task_sk(task_id))
        return None if item is None else self._load(Task, item)

    def create_task(self, task: Task) -> tuple[Task, bool]:
        """Store a new task once: (the stored task, whether this call created it).

        A redelivered create gets the stored task back unchanged, so replaying an event
        never overwrites later changes.
        """
        pk, sk = layout.user_pk(task.user_id), layout.task_sk(task.task_id)
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
        wanted = None if status is None else TaskStatus(status)
        tasks = self._all(Task, user_id, layout.TASK)
        if wanted is not None:
            tasks = [task for task in tasks if task.status is wanted]
        return sorted(tasks, key=_sort_key)

    # -- reminders -----------------------------------------------------------------------

    def get_reminder(self, user_id: str, task_id: str) -> Reminder | None:
        item = self._backend.get(layout.user_pk(user_id), layout.reminder_sk(task_id))
        return None if item is None else self._load(Reminder, item)

    def list_reminders(self, user_id: str) -> list[Reminder]:
        """Every reminder of a user, by task id."""
        return self._all(Reminder, user_id, layout.REMINDER)

    def _all(self, model: type[M], user_id: str, prefix: str) -> list[M]:
        """Every item of a kind in a user's partition, read page by page."""
        pk = layout.user_pk(user_id)
        found: list[M] = []
        cursor: str | None = None
        while True:
            items, cursor = self._backend.query(pk, prefix, limit=LIST_PAGE, cursor=cursor)
            found.extend(self._load(model, item) for item in items)
            if cursor is None:
                return found

    def save_reminder(self, reminder: Reminder) -> Reminder:
        """Version 0 creates the reminder if absent, any other version compare-and-sets.

        Raises Conflict if stale. Pending reminders enter the due index; others leave it.
        """
        try:
            [saved] = self.commit([reminder])
        except CommitConflict:
            raise Conflict(
                f"reminder of task {reminder.task_id!r} changed since version {reminder.version}"
            ) from None
        return saved

    def due_reminders(
        self, until: datetime, *, limit: int = 100, cursor: str | None = None
    ) -> Page[Reminder]:
        """Reminders in the due index (pending, or sent and not yet announced) with
        remind_at <= until, of every user, oldest first.

        The only cross-user read: each reminder carries its own user_id. Page through with
        the returned cursor and the same `until`; every due reminder comes exactly once
        (unless it changes meanwhile). The index may lag a write by a moment on DynamoDB,
        so claim before sending: `claim_reminders` claims on the version read, and one
        that changed since is not claimed.
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
        claimed = self.claim_reminders([current], owner=owner, now=now, lease=lease)
        return claimed[0] if claimed else None

    def claim_reminders(
        self, candidates: Sequence[Reminder], *, owner: str, now: datetime, lease: timedelta
    ) -> list[Reminder]:
        """Lease each claimable one of `candidates` (as read, e.g. a `due_reminders` page)
        to `owner` until ``now + lease``, in one round trip: the ones claimed, as stored.

        Each claim is a compare-and-set on the version read, so one that changed since
        (claimed by another sender, or read from a due index that lagged) is left out, and
        only it: of many concurrent claimers exactly one gets each reminder. At most
        `MAX_COMMIT` candidates."""
        at = as_utc(now)
        claims = [reminders.claim(r, owner=owner, now=at, lease=lease) for r in candidates]
        saved = self.save_each([claim for claim in claims if claim is not None])
        return [reminder for reminder in saved if reminder is not None]

    # -- idempotency receipts ------------------------------------------------------------

    def get_receipt(self, key: str, *, now: datetime | None = None) -> Receipt | None:
        """The unexpired receipt of event `key` (`nextup.envelope.event_key`)."""
        [receipt] = self.load([receipt_ref(key)])
        return None if receipt is None or receipt.expired(now or _now()) else receipt

    def purge_expired(self, now: datetime) -> int:
        """Delete expired receipts; how many. DynamoDB's TTL does this itself (returns 0)."""
        return self._backend.purge_expired(math.floor(as_utc(now).timestamp()))
