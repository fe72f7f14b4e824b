"""State of the functions: tasks, reminders and idempotency receipts in one table.

    store = open_store("dynamodb://nextup")          # or "sqlite:///.nextup/state.db"
    store.init()              # DynamoDB: once per deploy (`nextup store init`)
    task, reminder = store.load([task_ref(user, task_id), reminder_ref(user, task_id)])
    store.commit([changed_task, changed_reminder, receipt])   # all or nothing

`open_store` imports only the backend the URL names, so a cold start never pays for sqlite3
on DynamoDB, and for boto3 only when its settings need boto3 (`store.dynamodb`).
"""

from __future__ import annotations

from nextup.store.base import (
    Backend,
    CommitConflict,
    Conflict,
    InvalidCursor,
    Item,
    Page,
    Receipt,
    Ref,
    Store,
    StoreError,
    StoreNotReady,
    StoreUnavailable,
    receipt_ref,
    reminder_ref,
    task_ref,
)

__all__ = [
    "SUPPORTED_SCHEMES",
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
    "open_store",
    "receipt_ref",
    "reminder_ref",
    "task_ref",
]

SUPPORTED_SCHEMES = ("sqlite", "dynamodb")


def open_store(url: str) -> Store:
    """A Store for `url`; nothing is created until `Store.init()`.

    - ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``, option
      ``?timeout=SECONDS`` (how long a writer waits for a lock; default 5).
    - ``dynamodb://TABLE``, option ``?shards=N`` (due-index shards, default 4; only ever
      raise it). Endpoint, region and credentials come from the usual AWS settings.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in SUPPORTED_SCHEMES:
        raise ValueError(
            f"unsupported store URL {url!r}: use sqlite:///path/to/state.db or dynamodb://TABLE"
        )
    if scheme == "sqlite":
        from nextup.store.sqlite import SqliteBackend  # here, not at the top: import cost

        return Store(SqliteBackend.from_url(url))
    from nextup.store.dynamodb import DynamoBackend  # here, not at the top: import cost

    return Store(DynamoBackend.from_url(url))
