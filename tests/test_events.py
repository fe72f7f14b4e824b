"""The event model: canonical data, the seed's shapes, and errors that name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from nextup import events
from nextup.envelope import CloudEvent, parse_http
from nextup.errors import BadRequest, UnsupportedMediaType
from nextup.fields import Mode

# The canonical example for todo.task.created is the catalog's own example.
CANONICAL = events.CATALOG[events.TASK_CREATED].example


def event(type_: str, data, **attributes) -> CloudEvent:
    return CloudEvent({"type": type_, "source": "/test", "id": "e1", **attributes}, data)


def test_canonical_created_event():
    decoded = events.decode(event(events.TASK_CREATED, CANONICAL))
    assert decoded.type == events.TASK_CREATED
    assert not decoded.seed
    data = decoded.data
    assert data.due_at == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert data.recurrence.mode is Mode.SCHEDULE
    assert data.reminder.before == timedelta(minutes=15)
    assert data.notify.email == "ann@example.com"


def test_binary_and_structured_http_decode_to_the_same_data():
    body = json.dumps(CANONICAL).encode()
    binary = parse_http(
        {
            "ce-specversion": "1.0",
            "ce-id": "1",
            "ce-source": "/s",
            "ce-type": events.TASK_CREATED,
            "content-type": "application/json",
        },
        body,
    )
    structured = parse_http(
        {"content-type": "application/cloudevents+json"},
        json.dumps(
            {
                "specversion": "1.0",
                "id": "1",
                "source": "/s",
                "type": events.TASK_CREATED,
                "data": CANONICAL,
            }
        ).encode(),
    )
    assert events.decode(binary).data == events.decode(structured).data


def test_seed_shape_under_any_type():
    seed = {
        "event_type": "task.completed",
        "task_id": 42,
        "user_id": "u1",
        "payload": {
            "title": "Pay rent",
            "recurring_pattern": "monthly",
            "recurring_end_date": "2027-06-30",
            "due_at": "2026-12-01T09:00:00",
        },
    }
    for type_ in ("com.dapr.event.sent", "anything.at.all", events.TASK_COMPLETED):
        decoded = events.decode(event(type_, seed))
        assert decoded.type == events.TASK_COMPLETED
        assert decoded.seed
        assert decoded.data.task_id == "42"
        # A phrase is stored as the RRULE it means.
        assert decoded.data.recurrence.rule == "FREQ=MONTHLY"
        # A bare end date runs through the end of that day.
        assert decoded.data.recurrence.until == datetime(2027, 6, 30, 23, 59, 59)
        assert decoded.data.title == "Pay rent"


def test_dapr_envelope_inside_data_is_unwrapped():
    dapr = {
        "specversion": "1.0",
        "type": "com.dapr.event.sent",
        "source": "backend",
        "id": "d1",
        "pubsubname": "kafka-pubsub",
        "topic": "task-events",
        "data": {
            "event_type": "task.created",
            "task_id": "t9",
            "user_id": "u1",
            "payload": {"title": "x"},
        },
    }
    decoded = events.decode(event("com.dapr.event.sent", dapr))
    assert decoded.type == events.TASK_CREATED
    assert decoded.data.task_id == "t9"


def test_seed_without_recurrence_is_a_plain_task():
    seed = {
        "event_type": "task.created",
        "task_id": "t1",
        "user_id": "u1",
        "payload": {"title": "once"},
    }
    assert events.decode(event("x", seed)).data.recurrence is None


@pytest.mark.parametrize(
    ("type_", "data", "field"),
    [
        (events.TASK_CREATED, {**CANONICAL, "user_id": "bad user"}, "data.user_id"),
        (events.TASK_CREATED, {**CANONICAL, "task_id": "x" * 129}, "data.task_id"),
        (events.TASK_CREATED, {**CANONICAL, "task_id": None}, "data.task_id"),
        (
            events.TASK_CREATED,
            {k: v for k, v in CANONICAL.items() if k != "user_id"},
            "data.user_id",
        ),
        (events.TASK_CREATED, {**CANONICAL, "title": "x" * 501}, "data.title"),
        (events.TASK_CREATED, {**CANONICAL, "due_at": "tomorrow"}, "data.due_at"),
        (events.TASK_CREATED, {**CANONICAL, "due_at": "9999-01-01T00:00:00Z"}, "data.due_at"),
        (events.TASK_CREATED, {**CANONICAL, "timezone": "Mars/Olympus"}, "data.timezone"),
        (events.TASK_CREATED, {**CANONICAL, "timezone": "../../etc/passwd"}, "data.timezone"),
        (
            events.TASK_CREATED,
            {**CANONICAL, "recurrence": {"rule": "FREQ=DAILY;INTERVAL=0"}},
            "data.recurrence.rule",
        ),
        (
            events.TASK_CREATED,
            {**CANONICAL, "recurrence": {"rule": "FREQ=SECONDLY"}},
            "data.recurrence.rule",
        ),
        (
            events.TASK_CREATED,
            {**CANONICAL, "recurrence": {"rule": "daily", "mode": "sometimes"}},
            "data.recurrence.mode",
        ),
        (
            events.TASK_CREATED,
            {**CANONICAL, "recurrence": {"rule": "daily", "count": 0}},
            "data.recurrence.count",
        ),
        (
            events.TASK_CREATED,
            {**CANONICAL, "reminder": {"before": "-PT5M"}},
            "data.reminder.before",
        ),
        (
            events.TASK_CREATED,
            {**CANONICAL, "reminder": {"before": "P400D"}},
            "data.reminder.before",
        ),
        (
            events.TASK_CREATED,
            {**CANONICAL, "notify": {"email": "ann@example.com\r\nBcc: x@y.z"}},
            "data.notify.email",
        ),
        (
            events.TASK_CREATED,
            {**CANONICAL, "notify": {"webhook": "file:///etc/passwd"}},
            "data.notify.webhook",
        ),
        (events.TASK_COMPLETED, {"user_id": "u1"}, "data.task_id"),
        (
            events.TASK_COMPLETED,
            {"user_id": "u1", "task_id": "t1", "completed_at": "never"},
            "data.completed_at",
        ),
        (events.OCCURRENCE_REQUESTED, {"user_id": "u1", "task_id": "t1"}, "data.series_id"),
        (
            "com.dapr.event.sent",
            {"event_type": "task.exploded", "task_id": "t", "user_id": "u"},
            "data.event_type",
        ),
        (
            "com.dapr.event.sent",
            {"event_type": "task.created", "task_id": "t", "user_id": "u", "payload": []},
            "data.payload",
        ),
        ("com.dapr.event.sent", {"no": "seed shape"}, "data.event_type"),
        ("todo.unknown", {}, "type"),
        (events.TASK_CREATED, [1, 2], "data"),
    ],
)
def test_invalid_data_names_the_field(type_, data, field):
    with pytest.raises(BadRequest) as caught:
        events.decode(event(type_, data))
    assert caught.value.field == field
    assert caught.value.error.startswith(field) or field in (
        "type",
        "data",
        "data.event_type",
        "data.payload",
    )


def test_invalid_rule_message_is_fit_for_a_client():
    with pytest.raises(BadRequest) as caught:
        events.decode(
            event(
                events.TASK_CREATED, {**CANONICAL, "recurrence": {"rule": "FREQ=DAILY;INTERVAL=0"}}
            )
        )
    assert "INTERVAL" in caught.value.error
    assert "Traceback" not in caught.value.error


def test_non_json_data_for_a_task_event_is_415():
    with pytest.raises(UnsupportedMediaType):
        events.decode(event(events.TASK_CREATED, b"title=x", datacontenttype="text/plain"))


def test_ping_tick_data_is_not_read():
    for data in (None, b"plain text", {"sweep": "reminders"}, "a string"):
        assert events.decode(event(events.PING, data)).type == events.PING


def test_unknown_fields_are_ignored_not_stored():
    decoded = events.decode(event(events.TASK_CREATED, {**CANONICAL, "priority": "high"}))
    assert "priority" not in decoded.data.model_dump()


def test_every_catalog_example_is_valid_data():
    for spec in events.CATALOG.values():
        spec.model.model_validate(spec.example)
