"""The events the benchmarks send, as raw HTTP/1.1 requests (binary-mode CloudEvents, the
way the Knative dispatcher delivers them).

Templates carry `MARK` wherever a request must be unique (the CloudEvent id, the task id);
the load generator puts the request's sequence number there (`bench.loadgen`). `render`
makes one concrete request from a template.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bench.fixtures import RULE, ZONE, task_fields

MARK = "@@@@@@@"
# Replaced by the sequence number's last two digits: the user id, so events spread over 100
# users the way `bench.fixtures.user_of` spreads the pre-created tasks.
TAIL = "##"
SOURCE = "/bench/producer"


def request(
    path: str,
    headers: dict[str, str],
    body: bytes,
    *,
    host: str = "127.0.0.1",
    close: bool = False,
) -> str:
    lines = [f"POST {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"content-length: {len(body)}")
    if close:
        lines.append("connection: close")
    return "\r\n".join(lines) + "\r\n\r\n" + body.decode("latin-1")


def cloud_event(
    type_: str, data: dict, *, id_: str, path: str = "/", source: str = SOURCE, close: bool = False
) -> str:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": source,
        "ce-type": type_,
        "content-type": "application/json",
    }
    return request(path, headers, json.dumps(data).encode(), close=close)


def render(template: str, number: int) -> bytes:
    digits = str(number).zfill(len(MARK))
    return template.replace(MARK, digits).replace(TAIL, digits[-len(TAIL) :]).encode("latin-1")


def completed(task_prefix: str, *, close: bool = False, path: str = "/") -> str:
    """`todo.task.completed` of the pre-created task `<task_prefix><n>`
    (`bench.fixtures.task_ids`)."""
    data = {
        "user_id": user_placeholder(),
        "task_id": f"{task_prefix}{MARK}",
        "completed_at": _now(),
    }
    id_ = f"{task_prefix}done-{MARK}"
    return cloud_event("todo.task.completed", data, id_=id_, close=close, path=path)


def created(task_prefix: str, *, close: bool = False) -> str:
    """`todo.task.created` of a new daily task `<task_prefix><n>` due tomorrow."""
    due = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    data = {"user_id": user_placeholder(), "task_id": f"{task_prefix}{MARK}", **task_fields(due)}
    return cloud_event("todo.task.created", data, id_=f"{task_prefix}new-{MARK}", close=close)


def occurrence_requested(task_prefix: str, *, close: bool = False) -> str:
    """`todo.occurrence.requested` as complete-task emits it for a daily series' first task
    completed just now: schedule-next creates the next occurrence."""
    due = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    task = f"{task_prefix}{MARK}"
    data = {
        "user_id": user_placeholder(),
        "task_id": task,
        "series_id": task,
        "series_start": due.isoformat(),
        "occurrence": 0,
        "completed_at": _now(),
        **task_fields(due),
    }
    return cloud_event(
        "todo.occurrence.requested",
        data,
        id_=f"{task_prefix}occ-{MARK}",
        source="/nextup/complete-task",
        close=close,
    )


def reminder_due(task_prefix: str, *, close: bool = False) -> str:
    """`todo.reminder.due` for one pre-created task whose reminder is due."""
    data = {"user_id": user_placeholder(), "task_id": f"{task_prefix}{MARK}"}
    return cloud_event("todo.reminder.due", data, id_=f"{task_prefix}due-{MARK}", close=close)


def health_probe(prefix: str, *, close: bool = False) -> str:
    return cloud_event(
        "todo.health.probe", {"sent_at": _now()}, id_=f"{prefix}probe-{MARK}", close=close
    )


def seed_completed(task_prefix: str, *, close: bool = False) -> str:
    """The seed's shape, as its producers publish a completion through Dapr (a structured
    CloudEvent whose data is `{event_type, task_id, user_id, payload}`)."""
    envelope = {
        "specversion": "1.0",
        "id": f"{task_prefix}seed-{MARK}",
        "source": SOURCE,
        "type": "com.dapr.event.sent",
        "datacontenttype": "application/json",
        "pubsubname": "kafka-pubsub",
        "topic": "task-events",
        "data": {
            "event_type": "task.completed",
            "task_id": f"{task_prefix}{MARK}",
            "user_id": user_placeholder(),
            "payload": {
                "title": "Water the plants",
                "recurring_pattern": RULE,
                "recurring_end_date": None,
                "due_at": _now(),
                "timezone": ZONE,
            },
        },
    }
    return request(
        "/api/events/task-events",
        {"content-type": "application/cloudevents+json"},
        json.dumps(envelope).encode(),
        close=close,
    )


def user_placeholder() -> str:
    return "u" + TAIL


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()
