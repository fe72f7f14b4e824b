"""Redelivery storms: every event of a run delivered three times, concurrently and in
random order, to the real function processes, replies published back like a broker does
(so each reply travels three times too): exactly one completion, one next occurrence and
one reminder per task, on both store backends.

Phase 1 registers daily tasks whose reminders are due, while reminder sweeps run; phase 2
completes them all, which asks for every next occurrence (whose reminders are due too),
again with sweeps running. Between and after, sweeps run until nothing is due.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from figures import record
from minibroker import Delivery, MiniBroker, Stats, percentile
from relstack import FunctionSet

from harness import cloud_event
from nextup.envelope import event_key, parse_http
from nextup.reminders import ReminderStatus
from nextup.tasks import TaskStatus
from nextup_dev.stores import DYNAMODB, SQLITE, STORE_KINDS

COPIES = 3
USERS = 20


def deliveries(broker: MiniBroker, events: list[tuple[dict, bytes]], copies: int) -> list:
    out = []
    for headers, body in events:
        for _ in range(copies):
            delivery = broker.delivery(headers, body)
            assert delivery is not None
            out.append(Delivery(delivery.function, dict(headers), body))
    return out


def sweep_until_idle(fs: FunctionSet, broker: MiniBroker, run: str, phase: str) -> int:
    """Ticks until no reminder is due or waiting for its announcement; how many it took."""
    for n in range(30):
        now = datetime.now(UTC) + timedelta(seconds=1)
        if not fs.store.due_reminders(now, limit=10).items:
            return n
        tick = cloud_event("todo.reminder.due", {}, id_=f"{run}-{phase}-final-{n}")
        broker.run(deliveries(broker, [tick], 1))
    raise AssertionError("reminders still due after 30 sweeps")


def summary(stats: Stats) -> dict:
    latencies = stats.latencies(lambda a: a.status is not None)
    return {
        "posts": stats.posts,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items(), key=str)},
        "retries": stats.retries,
        "replies": stats.replies,
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "seconds": round(stats.seconds, 1),
    }


# How many tasks the storm has, per store kind.
TASKS = {SQLITE: 400, DYNAMODB: 40}


@pytest.mark.parametrize(("kind", "tasks"), [(kind, TASKS[kind]) for kind in STORE_KINDS])
def test_every_event_three_times_concurrently_out_of_order(kind, tasks, tmp_path, moto_server):
    with pytest.MonkeyPatch.context() as mp:
        fs = FunctionSet.start(
            kind,
            tmp_path,
            mp,
            moto=moto_server,
            env={"NEXTUP_RETRY_BUDGET": "5", "NEXTUP_REMINDER_LEASE": "PT60S"},
        )
        try:
            _storm(fs, kind, tasks)
        finally:
            fs.stop()


def _storm(fs: FunctionSet, kind: str, count: int) -> None:
    run = uuid.uuid4().hex[:6]
    users = [f"storm-{run}-{n}" for n in range(USERS)]
    due = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    tasks = [(users[i % USERS], f"{users[i % USERS]}.t{i}") for i in range(count)]
    zones = ("Europe/Berlin", "America/New_York", "Asia/Kolkata", None)
    created, completed = [], []
    for i, (user, task) in enumerate(tasks):
        data = {
            "user_id": user,
            "task_id": task,
            "title": f"Chore {i}",
            "due_at": due.isoformat(),
            "recurrence": {"rule": "FREQ=DAILY"},
            "reminder": {"before": "P1D"},  # the reminders of both occurrences are due now
            "notify": {"email": f"{user}@example.com"},
        }
        if zones[i % len(zones)]:
            data["timezone"] = zones[i % len(zones)]
        created.append(cloud_event("todo.task.created", data, id_=f"{run}-c{i}"))
        completed.append(
            cloud_event(
                "todo.task.completed", {"user_id": user, "task_id": task}, id_=f"{run}-d{i}"
            )
        )
    ticks = 5  # sweeps per phase, each delivered three times like every other event
    broker = MiniBroker(fs.urls(), concurrency=24, reply_copies=1, seed=count)

    # Phase 1: register, with sweeps running.
    phase1 = deliveries(broker, created, COPIES) + deliveries(
        broker,
        [cloud_event("todo.reminder.due", {}, id_=f"{run}-a{n}") for n in range(ticks)],
        COPIES,
    )
    broker.run(phase1)
    seconds = {"phase1": round(broker.stats.seconds, 1)}
    first_sweeps = sweep_until_idle(fs, broker, run, "a")
    registered = sum(len(fs.store.list_tasks(user)) for user in users)
    assert registered == count
    mails = fs.mail_by_task()
    assert sorted(mails) == sorted(task for _, task in tasks), "one reminder per task"
    assert set(mails.values()) == {1}, "no reminder twice"

    # Phase 2: complete; each delivery's reply (todo.occurrence.requested) is published.
    phase2 = deliveries(broker, completed, COPIES) + deliveries(
        broker,
        [cloud_event("todo.reminder.due", {}, id_=f"{run}-b{n}") for n in range(ticks)],
        COPIES,
    )
    broker.run(phase2)
    seconds["phase2"] = round(broker.stats.seconds - seconds["phase1"], 1)
    second_sweeps = sweep_until_idle(fs, broker, run, "b")
    stats = broker.stats

    assert stats.dead == [], [(a.delivery.type, a.status, a.body[:200]) for a in stats.dead[:5]]
    # A transport error other than a timeout is the server closing a kept-alive connection
    # as the client reuses it: retried like any, and the functions must still be running.
    failed = [
        a
        for a in stats.answers
        if (a.status is None and a.body.startswith(b"ReadTimeout"))
        or (a.status is not None and a.status >= 500 and a.status != 503)
    ]
    assert all(f.process.poll() is None for f in fs.functions.values()), "a function died"
    assert not failed, [(a.delivery.type, a.status, round(a.ms), a.body[:200]) for a in failed[:5]]

    keys = {
        task: event_key(parse_http(headers, body))
        for (_, task), (headers, body) in zip(tasks, completed, strict=True)
    }
    children: Counter = Counter()
    all_tasks = [t for user in users for t in fs.store.list_tasks(user)]
    for task in all_tasks:
        if task.parent_task_id is None:
            assert task.status is TaskStatus.COMPLETED, task.task_id
            assert task.completed_by == keys[task.task_id], "completed once, by its event"
        else:
            assert task.status is TaskStatus.OPEN
            children[task.parent_task_id] += 1
    assert len(all_tasks) == 2 * count, "no next occurrence lost or doubled"
    assert sorted(children) == sorted(keys) and set(children.values()) == {1}

    mails = fs.mail_by_task()
    assert len(mails) == 2 * count and set(mails.values()) == {1}, "one reminder per task"
    message_ids = fs.message_ids()
    assert len(message_ids) == 2 * count and set(message_ids.values()) == {1}
    for task in all_tasks:
        reminder = fs.store.get_reminder(task.user_id, task.task_id)
        assert reminder.status is ReminderStatus.SENT and reminder.announced, task.task_id

    sent = [e for e in fs.sink_events() if e["type"] == "todo.reminder.sent"]
    sent_ids = Counter(e["id"] for e in sent)
    assert len(sent_ids) == 2 * count, "every reminder announced"
    scheduled = Counter(
        h["ce-id"] for h, _ in stats.emitted if h["ce-type"] == "todo.task.scheduled"
    )
    assert len(scheduled) == count

    by_type: dict = {}
    for line in fs.log_lines():
        if line.get("msg") == "event" and "duration_ms" in line:
            by_type.setdefault(f"{line.get('type')}/{line.get('outcome')}", []).append(
                line["duration_ms"]
            )
    duplicates = sum(1 for line in fs.log_lines() if line.get("outcome") == "duplicate")
    record(
        f"storm[{kind}]",
        tasks=count,
        events=6 * count + 2 * ticks,
        deliveries=stats.posts,
        answered_as_duplicate=duplicates,
        sweeps_after=first_sweeps + second_sweeps,
        phase_seconds=seconds,
        server_ms={
            k: {"n": len(v), "p50": percentile(v, 0.5), "p99": percentile(v, 0.99)}
            for k, v in sorted(by_type.items())
        },
        completions=count,
        next_occurrences=len(children),
        mails=sum(mails.values()),
        reminder_sent_events=len(sent),
        reminder_sent_distinct=len(sent_ids),
        scheduled_replies=sum(scheduled.values()),
        scheduled_distinct=len(scheduled),
        **summary(stats),
    )
