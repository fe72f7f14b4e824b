"""The flow end to end through the real functions: create, complete, next occurrence,
duplicates answered like the first delivery, the seed's and Dapr's shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from harness import cloud_event, structured_event
from nextup.envelope import parse_http
from nextup.reminders import ReminderStatus
from nextup.tasks import TaskStatus

pytestmark = pytest.mark.fast


def weekly(user: str, name: str = "t1", **overrides) -> dict:
    # Task ids are global across users: every test makes its own.
    data = {
        "user_id": user,
        "task_id": f"{user}.{name}",
        "title": "Water the plants",
        "due_at": "2026-11-23T09:00:00+01:00",
        "timezone": "Europe/Berlin",
        "recurrence": {"rule": "FREQ=WEEKLY;BYDAY=MO,TH"},
        "reminder": {"before": "PT15M"},
        "notify": {"email": "ann@example.com"},
    }
    data.update(overrides)
    return data


def reply_of(response: httpx.Response):
    """The CloudEvent a 200 reply carries (binary mode), as the broker would read it."""
    assert response.status_code == 200, response.text
    return parse_http(dict(response.headers), response.content)


def tasks_json(stack, user: str) -> list[dict]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nextup.cli",
            "tasks",
            "list",
            "--user",
            user,
            "--json",
            "--store",
            stack.store_url,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, **stack.env},
    )
    return json.loads(out.stdout)


def test_weekly_task_completed_yields_the_next_occurrence(stack, user):
    created = stack.post(
        "schedule-next", *cloud_event("todo.task.created", weekly(user), id_=f"{user}-c")
    )
    assert created.status_code == 202, created.text
    assert created.json()["outcome"] == "registered"
    reminder = stack.store.get_reminder(user, f"{user}.t1")
    assert reminder.remind_at == datetime(2026, 11, 23, 7, 45, tzinfo=UTC)

    completion = cloud_event(
        "todo.task.completed",
        {"user_id": user, "task_id": f"{user}.t1", "completed_at": "2026-11-23T09:30:00+01:00"},
        id_=f"{user}-done",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    done = stack.post("complete-task", *completion)
    request = reply_of(done)
    assert request["type"] == "todo.occurrence.requested"
    assert request["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert request["partitionkey"] == user
    assert stack.store.get_task(user, f"{user}.t1").status is TaskStatus.COMPLETED
    assert stack.store.get_reminder(user, f"{user}.t1").status is ReminderStatus.CANCELLED

    # The broker publishes the reply; its Trigger hands it to schedule-next.
    headers = {k: v for k, v in done.headers.items() if k.startswith("ce-") or k == "content-type"}
    scheduled = reply_of(stack.post("schedule-next", headers, done.content))
    assert scheduled["type"] == "todo.task.scheduled"
    assert scheduled.data["task_id"] == f"{user}.t1@20261126T080000Z"
    assert scheduled.data["due_at"] == "2026-11-26T09:00:00+01:00"

    listed = {row["task_id"]: row for row in tasks_json(stack, user)}
    assert listed[f"{user}.t1"]["status"] == "completed"
    nxt = listed[f"{user}.t1@20261126T080000Z"]
    assert nxt["status"] == "open"
    assert nxt["parent_task_id"] == f"{user}.t1"
    assert nxt["due_at"] == "2026-11-26T09:00:00+01:00"
    assert stack.store.get_reminder(user, nxt["task_id"]).status is ReminderStatus.PENDING

    # The backend heard about the new occurrence once per delivery, idempotently keyed.
    posts = [
        r for r in stack.web.requests if r.path == "/api/tasks" and r.json()["user_id"] == user
    ]
    assert {r.headers["idempotency-key"] for r in posts} == {f"{user}:{user}.t1@20261126T080000Z"}


def test_duplicates_get_the_first_reply_and_no_second_effect(stack, user):
    stack.post("schedule-next", *cloud_event("todo.task.created", weekly(user), id_=f"{user}-c"))
    completion = cloud_event(
        "todo.task.completed", {"user_id": user, "task_id": f"{user}.t1"}, id_=f"{user}-d"
    )
    first = reply_of(stack.post("complete-task", *completion))
    version = stack.store.get_task(user, f"{user}.t1").version
    for _ in range(3):
        again = reply_of(stack.post("complete-task", *completion))
        assert again["id"] == first["id"]
        assert again.data == first.data
    assert stack.store.get_task(user, f"{user}.t1").version == version

    # A different completion event for the same task is a no-op: nothing emitted.
    other = stack.post(
        "complete-task",
        *cloud_event(
            "todo.task.completed", {"user_id": user, "task_id": f"{user}.t1"}, id_=f"{user}-d2"
        ),
    )
    assert other.status_code == 202 and other.json()["outcome"] == "noop"

    # The occurrence request delivered twice, even under two ids, creates one task.
    headers, body = cloud_event(
        "todo.occurrence.requested", first.data, id_=first["id"], source=first["source"]
    )
    one = reply_of(stack.post("schedule-next", headers, body))
    two = reply_of(stack.post("schedule-next", headers, body))
    assert one["id"] == two["id"]
    headers, body = cloud_event("todo.occurrence.requested", first.data, id_="another-id")
    three = reply_of(stack.post("schedule-next", headers, body))
    assert three.data["task_id"] == one.data["task_id"]
    open_tasks = [t for t in stack.store.list_tasks(user) if t.status is TaskStatus.OPEN]
    assert len(open_tasks) == 1


def test_structured_mode_and_seed_shape(stack, user):
    seed = {
        "event_type": "task.completed",
        "task_id": abs(hash(user)) % 10**9,
        "user_id": user,
        "payload": {
            "title": "Pay rent",
            "recurring_pattern": "monthly",
            "recurring_end_date": "2027-12-31",
            "due_at": "2026-12-01T09:00:00",
        },
    }
    # An unknown task is registered from the completion that carries its fields.
    headers, body = structured_event("com.dapr.event.sent", seed, id_=f"{user}-seed")
    request = reply_of(stack.post("complete-task", headers, body, path="/api/events/task-events"))
    assert request.data["task_id"] == str(seed["task_id"])
    assert request.data["recurrence"]["rule"] == "FREQ=MONTHLY"  # the phrase, as its RRULE
    scheduled = reply_of(
        stack.post(
            "schedule-next",
            *cloud_event("todo.occurrence.requested", request.data, id_=request["id"]),
        )
    )
    assert scheduled.data["due_at"] == "2027-01-01T09:00:00Z"


def test_seed_events_for_other_functions_are_acknowledged_not_dead_lettered(stack, user):
    seed = {
        "event_type": "task.created",
        "task_id": f"{user}.s1",
        "user_id": user,
        "payload": {"title": "x"},
    }
    response = stack.post(
        "complete-task", *structured_event("com.dapr.event.sent", seed, id_=f"{user}-x")
    )
    assert response.status_code == 202
    assert response.json()["outcome"] == "ignored"
    assert stack.store.get_task(user, f"{user}.s1") is None


def test_dapr_delivery_gets_dapr_answers(stack, user):
    envelope = {
        "specversion": "1.0",
        "id": f"{user}-dapr",
        "source": "backend",
        "type": "com.dapr.event.sent",
        "pubsubname": "kafka-pubsub",
        "topic": "task-events",
        "datacontenttype": "application/json",
        "data": {
            "event_type": "task.created",
            "task_id": f"{user}.dp1",
            "user_id": user,
            "payload": {"title": "from dapr"},
        },
    }
    headers = {"content-type": "application/cloudevents+json"}
    ok = stack.post("schedule-next", headers, json.dumps(envelope).encode())
    assert ok.status_code == 200 and ok.json() == {"status": "SUCCESS"}
    assert stack.store.get_task(user, f"{user}.dp1").title == "from dapr"
    bad = dict(
        envelope,
        id=f"{user}-dapr2",
        data={"event_type": "task.created", "task_id": "bad id", "user_id": user},
    )
    dropped = stack.post("schedule-next", headers, json.dumps(bad).encode())
    assert dropped.json() == {"status": "DROP"}
    subscriptions = stack.get("schedule-next", "/dapr/subscribe").json()
    assert subscriptions == [{"pubsubname": "kafka-pubsub", "topic": "task-events", "route": "/"}]


def test_update_and_delete_keep_the_reminder_in_step(stack, user):
    stack.post("schedule-next", *cloud_event("todo.task.created", weekly(user), id_=f"{user}-c"))
    moved = stack.post(
        "schedule-next",
        *cloud_event(
            "todo.task.updated",
            {"user_id": user, "task_id": f"{user}.t1", "due_at": "2026-11-23T11:00:00+01:00"},
            id_=f"{user}-u",
        ),
    )
    assert moved.json()["outcome"] == "updated"
    assert stack.store.get_reminder(user, f"{user}.t1").remind_at == datetime(
        2026, 11, 23, 9, 45, tzinfo=UTC
    )
    assert stack.store.get_task(user, f"{user}.t1").title == "Water the plants", (
        "fields not sent are kept"
    )
    deleted = stack.post(
        "schedule-next",
        *cloud_event(
            "todo.task.deleted", {"user_id": user, "task_id": f"{user}.t1"}, id_=f"{user}-x"
        ),
    )
    assert deleted.json()["outcome"] == "deleted"
    assert stack.store.get_reminder(user, f"{user}.t1").status is ReminderStatus.CANCELLED
    # A delete for a task never seen leaves a tombstone: a late `created` cannot revive it.
    stack.post(
        "schedule-next",
        *cloud_event(
            "todo.task.deleted", {"user_id": user, "task_id": f"{user}.late"}, id_=f"{user}-x2"
        ),
    )
    stack.post(
        "schedule-next", *cloud_event("todo.task.created", weekly(user, "late"), id_=f"{user}-c2")
    )
    assert stack.store.get_task(user, f"{user}.late").status is TaskStatus.DELETED
    assert stack.store.get_reminder(user, f"{user}.late") is None


def test_series_end_emits_nothing(stack, user):
    ending = weekly(user, recurrence={"rule": "FREQ=WEEKLY;BYDAY=MO,TH", "count": 1})
    stack.post("schedule-next", *cloud_event("todo.task.created", ending, id_=f"{user}-c"))
    request = reply_of(
        stack.post(
            "complete-task",
            *cloud_event(
                "todo.task.completed", {"user_id": user, "task_id": f"{user}.t1"}, id_=f"{user}-d"
            ),
        )
    )
    response = stack.post(
        "schedule-next", *cloud_event("todo.occurrence.requested", request.data, id_=request["id"])
    )
    assert response.status_code == 202
    assert response.json()["outcome"] == "series_ended"
    assert [t.task_id for t in stack.store.list_tasks(user)] == [f"{user}.t1"]


def test_one_json_log_line_per_event(stack, user):
    stack.post(
        "complete-task",
        *cloud_event(
            "todo.task.completed", {"user_id": user, "task_id": f"{user}.nope"}, id_=f"{user}-log"
        ),
    )
    lines = [
        line
        for line in stack.functions["complete-task"].log_lines()
        if line.get("event_id") == f"{user}-log" and line.get("msg") == "event"
    ]
    assert len(lines) == 1
    line = lines[0]
    assert line["type"] == "todo.task.completed"
    assert line["user"] == user
    assert line["status"] == 404
    assert line["outcome"] == "rejected"
    assert line["duration_ms"] >= 0
    assert (
        timedelta(0)
        <= datetime.now(UTC) - datetime.fromisoformat(line["ts"])
        < timedelta(minutes=5)
    )
