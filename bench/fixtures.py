"""The state a benchmark needs before its clock starts: tasks and due reminders written
straight into the store through nextup's own store API (the items the functions would have
written for the same `todo.task.created` events), so pre-creating is cheap and untimed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from nextup import reminders, tasks
from nextup.fields import TaskFields
from nextup.store import open_store
from nextup.store.items import MAX_COMMIT

ZONE = "Europe/Berlin"
RULE = "FREQ=DAILY"
USERS = 100  # tasks spread over this many users, as many users' events would be


def user_of(n: int) -> str:
    """The user of the n-th task; `bench.events` templates derive the same from n."""
    return f"u{n % USERS:02d}"


def task_ids(prefix: str, first: int, count: int) -> list[tuple[str, str]]:
    """(user, task id) of the tasks `bench.events` templates name with `prefix`."""
    return [(user_of(n), f"{prefix}{n:07d}") for n in range(first, first + count)]


def task_fields(due_at: datetime, *, email: str = "ann@example.com") -> dict:
    """A daily recurring task with a 15-minute reminder by e-mail: the common case."""
    return {
        "title": "Water the plants",
        "due_at": due_at.isoformat(),
        "timezone": ZONE,
        "recurrence": {"rule": RULE},
        "reminder": {"before": "PT15M"},
        "notify": {"email": email},
    }


def init(url: str) -> None:
    """What `nextup store init --store URL` does."""
    with open_store(url) as store:
        store.init()


def _models(user: str, task_id: str, due_at: datetime, email: str) -> list:
    """The task a `todo.task.created` event registers, and its reminder."""
    fields = TaskFields.model_validate(task_fields(due_at, email=email))
    task = tasks.register(user, task_id, fields, event_key=f"/bench#{task_id}")
    reminder = reminders.schedule(task, None)
    return [task] if reminder is None else [task, reminder]


def create_tasks(
    url: str,
    ids: Iterable[tuple[str, str]],
    *,
    due_in: timedelta,
    email: Callable[[str], str] | None = None,
) -> int:
    """Open recurring tasks `(user, task_id)`, due `due_in` from now (negative: overdue,
    so their reminders are due), each with its pending reminder, mailed to `email(user)`
    (default: ann@example.com). Written as many at a time as one commit takes (a fresh
    store is cheap to fill even on DynamoDB). Returns how many."""
    due_at = (datetime.now(UTC) + due_in).replace(second=0, microsecond=0)
    count, batch = 0, []
    with open_store(url) as store:
        for user, task_id in ids:
            models = _models(user, task_id, due_at, email(user) if email else "ann@example.com")
            if len(batch) + len(models) > MAX_COMMIT:
                store.commit(batch)
                batch = []
            batch += models
            count += 1
        if batch:
            store.commit(batch)
    return count
