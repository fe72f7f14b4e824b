"""`nextup dev` end to end with the real functions: Kafka (Tansu), the ingress, one consumer
group per Trigger from `eventing/`, the function processes, the local mailbox.

What Knative promises is at-least-once; what the whole must show is exactly-once effects:
every completion posted twice yields one next occurrence, every due reminder one mail.
"""

from __future__ import annotations

import base64
import email
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from devstack import DevStack, daily, wait_for

from harness import cloud_event, wait_until
from nextup.store import open_store
from nextup.tasks import TaskStatus

COMPLETIONS = 1000
USERS = 40


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("dev-flow"), "--quiet").start()
    try:
        yield stack
    finally:
        stack.stop()


def test_a_thousand_recurring_completions_posted_twice_yield_a_thousand_next_occurrences(
    dev: DevStack,
) -> None:
    run = uuid.uuid4().hex[:6]
    users = [f"bulk-{run}-{n}" for n in range(USERS)]
    tasks = [(users[i % USERS], f"{users[i % USERS]}.t{i}") for i in range(COMPLETIONS)]
    created = [
        cloud_event("todo.task.created", daily(user, task), id_=f"{run}-c{i}")
        for i, (user, task) in enumerate(tasks)
    ]
    dev.post_many(created)
    # Registration first, as the todo app would: a completion of a task not yet known is a
    # 404 (retried), which works too but only slower.
    wait_for(
        lambda: dev.status()["triggers"]["schedule-next-task-created"]["delivered"] >= COMPLETIONS,
        120,
        "every task registered",
    )
    completions = [
        cloud_event(
            "todo.task.completed",
            {"user_id": user, "task_id": task, "completed_at": "2026-11-23T10:00:00+01:00"},
            id_=f"{run}-d{i}",
        )
        for i, (user, task) in enumerate(tasks)
    ]
    started = time.monotonic()
    dev.post_many(completions + completions)  # every completion delivered twice
    status = dev.wait_drained(240)
    seconds = time.monotonic() - started

    store = open_store(dev.store_url)
    try:
        listed = [t for user in users for t in store.list_tasks(user)]
    finally:
        store.close()
    nexts = [t for t in listed if t.parent_task_id is not None]
    assert len(nexts) == COMPLETIONS
    assert {t.parent_task_id for t in nexts} == {task for _, task in tasks}
    assert all(t.status is TaskStatus.OPEN for t in nexts)
    assert all(t.due_at == datetime(2026, 11, 24, 8, 0, tzinfo=UTC) for t in nexts)
    done = [t for t in listed if t.parent_task_id is None]
    assert len(done) == COMPLETIONS and all(t.status is TaskStatus.COMPLETED for t in done)

    triggers = status["triggers"]
    assert triggers["complete-task-task-completed"]["delivered"] == 2 * COMPLETIONS
    # A duplicate completion is answered like the first: the same reply, the same id, so
    # schedule-next sees each occurrence request twice and creates it once.
    assert triggers["schedule-next-occurrence-requested"]["delivered"] == 2 * COMPLETIONS
    assert sum(t["dead_lettered"] + t["dropped"] for t in triggers.values()) == 0
    print(
        f"\n{COMPLETIONS} completions x2 through Kafka: {seconds:.1f} s, "
        f"{COMPLETIONS / seconds:.1f} completions/s"
    )


def test_an_invalid_event_lands_in_the_dead_letter_sink_with_the_error_extensions(
    dev: DevStack,
) -> None:
    event_id = f"bad-{uuid.uuid4().hex[:8]}"
    headers, body = cloud_event(
        "todo.task.created", {"user_id": "ann", "task_id": "not a valid id"}, id_=event_id
    )
    assert dev.post(headers, body).status_code == 202

    def mirrored() -> list[dict]:
        return [d for d in dev.dead_letters() if d["attributes"]["id"] == event_id]

    [letter] = wait_until(mirrored, 30, "the dead letter in .nextup/dead-letters/")
    attributes = letter["attributes"]
    assert attributes["type"] == "todo.task.created"
    assert attributes["knativeerrorcode"] == "400"
    assert attributes["knativeerrordest"] == dev.state()["routes"]["schedule-next"]
    body_sent_back = json.loads(base64.b64decode(attributes["knativeerrordata"]))
    assert body_sent_back["field"] == "data.task_id"
    assert letter["error"]["body"] == body_sent_back
    assert letter["data"] == {"user_id": "ann", "task_id": "not a valid id"}
    assert letter["kafka"]["topic"] == "nextup-dead-letters"


def test_a_due_reminder_is_mailed_once_however_many_ticks_arrive(dev: DevStack) -> None:
    user = f"mail-{uuid.uuid4().hex[:8]}"
    task = f"{user}.call"
    due = (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0)
    created = daily(
        user,
        task,
        due_at=due.isoformat(),
        reminder={"before": "PT1M"},  # due now
        notify={"email": f"{user}@example.com"},
    )
    dev.post(*cloud_event("todo.task.created", created, id_=f"{user}-c"))
    ticks = [
        cloud_event(
            "dev.knative.sources.ping",
            {"sweep": "reminders"},
            id_=f"{user}-tick-{n}",
            source="/apis/v1/namespaces/nextup/pingsources/reminder-sweep",
        )
        for n in range(12)
    ]
    due_events = [
        cloud_event("todo.reminder.due", {"user_id": user}, id_=f"{user}-due-{n}") for n in range(4)
    ]
    dev.post_many(ticks + due_events, concurrency=16)

    def mails_for_task() -> list[Path]:
        return [
            path
            for path in dev.mails()
            if email.message_from_bytes(path.read_bytes())["X-Nextup-Task"] == task
        ]

    [path] = wait_until(mails_for_task, 60, "the reminder mail")
    dev.wait_drained(120)  # every tick and due event has been dispatched
    assert len(mails_for_task()) == 1
    message = email.message_from_bytes(path.read_bytes())
    assert message["To"] == f"{user}@example.com"
    assert message["Subject"] == f"Reminder: Water plant {task}"
    assert message["X-Nextup-Envelope-To"] == f"{user}@example.com"


def test_an_event_no_trigger_routes_is_said_to_go_nowhere_and_the_logs_keep_it_all(
    dev: DevStack,
) -> None:
    before = dev.status()["events"]
    event_id = f"lost-{uuid.uuid4().hex[:8]}"
    assert dev.post(*cloud_event("todo.nobody.listens", {}, id_=event_id)).status_code == 202
    wait_for(lambda: dev.status()["events"]["unrouted"] == before["unrouted"] + 1, 30, "the count")
    assert dev.status()["events"]["posted"] == before["posted"], "counted once, as unrouted"
    # Shown even with --quiet: nothing will ever receive it.
    line = wait_until(
        lambda: [ln for ln in dev.log().splitlines() if f"id={event_id}" in ln], 10, "the line"
    )
    assert "unrouted" in line[0] and "no Trigger matches it" in line[0]
    logs = dev.state_dir / "logs"
    own = (logs / "nextup-dev.log").read_text()
    assert "nextup dev is up" in own and f"id={event_id}" in own
    dispatcher = (logs / "dispatcher.log").read_text()
    assert "dispatching for 14 Triggers" in dispatcher
    assert " delivered " in dispatcher, "what the dispatcher did, a line each, as it shows them"
