"""Builders for the store suite's tasks, reminders and receipts, at fixed times."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from nextup.reminders import Reminder
from nextup.store import Receipt
from nextup.tasks import Task

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def fresh_table() -> str:
    """A table name no other test uses: tests never share state."""
    return f"nextup-test-{uuid.uuid4().hex[:12]}"


def task(user_id: str, task_id: str, **fields: Any) -> Task:
    return Task(user_id=user_id, task_id=task_id, series_id=task_id, **fields)


def reminder(user_id: str, task_id: str, remind_at: datetime = T0, **fields: Any) -> Reminder:
    return Reminder(user_id=user_id, task_id=task_id, remind_at=remind_at, **fields)


def receipt(
    key: str, *, status: int = 202, ttl: timedelta = timedelta(days=1), at=T0, **body: Any
) -> Receipt:
    return Receipt(key=key, status=status, body=body or None, created_at=at, expires_at=at + ttl)


def create_in_process(url: str, barrier: Any, results: Any, racer: int) -> None:
    """A separate process's attempt to create alice's task t1 (see test_one_process_creates)."""
    from nextup.store import open_store

    with open_store(url) as store:
        barrier.wait()
        try:
            _, created = store.create_task(task("alice", "t1", title=f"process {racer}"))
            results.put(created)
        except Exception as exc:
            results.put(f"{type(exc).__name__}: {exc}")
