"""Skip and snooze end to end through `nextup dev`: the todo app's events in through the
ingress, the Triggers generated from the declarations, the real functions, the store and
the local mailbox. A skipped occurrence gets its next one exactly once, in both modes; a
snoozed reminder's mail arrives once more, at the new time, however often either event or
the sweep is delivered."""

from __future__ import annotations

import email
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from devstack import DevStack, wait_for

from harness import cloud_event
from nextup.store import open_store
from nextup.tasks import TaskStatus


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("dev-recurrence"), "--quiet").start()
    try:
        yield stack
    finally:
        stack.stop()


def tasks_of(dev: DevStack, user: str) -> dict[str, object]:
    store = open_store(dev.store_url)
    try:
        return {t.task_id: t for t in store.list_tasks(user)}
    finally:
        store.close()


@pytest.mark.parametrize(
    ("mode", "expected_next"),
    [
        # On schedule: the series' next 09:00 after the skip (missed days are not made).
        ("schedule", "t@20261126T080000Z"),
        # After completion: the rule restarted at the skip (14:00 Berlin the next day).
        ("completion", "t@20261126T130000Z"),
    ],
)
def test_a_skipped_daily_task_gets_its_next_occurrence_once(
    dev: DevStack, mode: str, expected_next: str
) -> None:
    user = f"skip-{mode}-{uuid.uuid4().hex[:6]}"
    created = {
        "user_id": user,
        "task_id": "t",
        "title": "Stretch",
        "due_at": "2026-11-23T09:00:00+01:00",
        "timezone": "Europe/Berlin",
        "recurrence": {"rule": "every day", "mode": mode},
    }
    dev.post_many([cloud_event("todo.task.created", created, id_=f"{user}-c")])
    wait_for(lambda: "t" in tasks_of(dev, user), 60, "the task to be registered")
    skipped = {"user_id": user, "task_id": "t", "skipped_at": "2026-11-25T14:00:00+01:00"}
    # The same skip three times (a redelivery), another skip of it, and a completion after
    # the skip: one closing wins, and one next occurrence is made.
    dev.post_many(
        [cloud_event("todo.occurrence.skipped", skipped, id_=f"{user}-s")] * 3
        + [cloud_event("todo.occurrence.skipped", skipped, id_=f"{user}-s2")]
        + [cloud_event("todo.task.completed", {"user_id": user, "task_id": "t"}, id_=f"{user}-d")],
        concurrency=1,
    )
    wait_for(lambda: len(tasks_of(dev, user)) == 2, 60, "the next occurrence")
    dev.wait_drained(120)
    found = tasks_of(dev, user)
    assert sorted(found) == sorted(["t", expected_next])
    first, nxt = found["t"], found[expected_next]
    assert first.status is TaskStatus.SKIPPED and first.completed_at is None
    assert first.skipped_at == datetime(2026, 11, 25, 13, tzinfo=UTC)
    assert nxt.status is TaskStatus.OPEN and nxt.occurrence == 1 and nxt.parent_task_id == "t"


def mails_of(dev: DevStack, task: str) -> list[email.message.Message]:
    found = [email.message_from_bytes(p.read_bytes()) for p in dev.mails()]
    return [m for m in found if m["X-Nextup-Task"] == task]


def sweep(dev: DevStack, user: str, n: int) -> None:
    """Ask send-reminder to send what is due now, as a PingSource tick would."""
    dev.post_many(
        [cloud_event("todo.reminder.due", {"user_id": user}, id_=f"{user}-due-{uuid.uuid4().hex}")]
        * n
    )


def test_a_snoozed_reminder_is_mailed_once_more_at_the_new_time(dev: DevStack) -> None:
    user = f"snooze-{uuid.uuid4().hex[:8]}"
    task = f"{user}.call"
    due = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    created = {
        "user_id": user,
        "task_id": task,
        "title": "Call the bank",
        "due_at": due.isoformat(),
        "reminder": {"before": "PT61M"},  # due a minute ago
        "notify": {"email": f"{user}@example.com"},
    }
    dev.post_many([cloud_event("todo.task.created", created, id_=f"{user}-c")])
    wait_for(lambda: task in tasks_of(dev, user), 60, "the task to be registered")
    sweep(dev, user, 1)
    [first] = wait_for(lambda: mails_of(dev, task), 60, "the first reminder mail")

    until = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    snoozed = {"user_id": user, "task_id": task, "until": until.isoformat()}
    # Delivered twice (a redelivery): one snooze.
    dev.post_many([cloud_event("todo.reminder.snoozed", snoozed, id_=f"{user}-z")] * 2)
    store = open_store(dev.store_url)
    try:
        wait_for(lambda: store.get_reminder(user, task).remind_at == until, 60, "the snooze stored")
    finally:
        store.close()

    def second_mail() -> list[email.message.Message]:
        sweep(dev, user, 1)  # a tick now and then, as the PingSource gives
        found = mails_of(dev, task)
        return found if len(found) >= 2 else []

    found = wait_for(second_mail, 60, "the snoozed reminder's mail", every=0.5)
    # More ticks and the snooze again: nothing more goes out.
    sweep(dev, user, 4)
    dev.post_many([cloud_event("todo.reminder.snoozed", snoozed, id_=f"{user}-z")])
    dev.wait_drained(120)
    assert len(mails_of(dev, task)) == 2
    again = next(m for m in found if m["Message-ID"] != first["Message-ID"])
    assert parsedate_to_datetime(again["Date"]) >= until
    assert again["Subject"] == first["Subject"] == "Reminder: Call the bank"
