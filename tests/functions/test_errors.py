"""Every client mistake gets a 4xx the broker will not retry, a JSON body naming the
problem, and changes nothing; an unknown task gets 404 so the broker retries."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from harness import cloud_event
from nextup.envelope import MAX_BODY


def snapshot(stack, user: str) -> tuple:
    store = stack.store
    return (
        [t.model_dump() for t in store.list_tasks(user)],
        store.owner_of(f"{user}.e1"),
    )


def created(user: str, **overrides) -> dict:
    data = {
        "user_id": user,
        "task_id": f"{user}.e1",
        "title": "x",
        "due_at": "2026-11-24T09:00:00Z",
    }
    data.update(overrides)
    return data


BAD = [
    # (function, headers, body, status, field)
    (
        "schedule-next",
        {"content-type": "application/json"},
        b'{"hello": "world"}',
        400,
        "specversion",
    ),
    ("schedule-next", {"content-type": "text/csv"}, b"a,b", 415, "content-type"),
    (
        "schedule-next",
        {"ce-specversion": "0.3", "ce-id": "1", "ce-source": "s", "ce-type": "todo.task.created"},
        b"{}",
        400,
        "specversion",
    ),
    (
        "schedule-next",
        {"ce-specversion": "1.0", "ce-source": "s", "ce-type": "todo.task.created"},
        b"{}",
        400,
        "id",
    ),
    (
        "schedule-next",
        {"content-type": "application/cloudevents+json"},
        b'{"specversion": "1.0", "id": ',
        400,
        None,
    ),
]


@pytest.mark.parametrize(("function", "headers", "body", "status", "field"), BAD)
def test_not_a_cloudevent(stack, user, function, headers, body, status, field):
    before = snapshot(stack, user)
    response = stack.post(function, headers, body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["field"] == field
    assert response.json()["error"]
    assert snapshot(stack, user) == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"task_id": "has space"}, "data.task_id"),
        ({"user_id": "x" * 200}, "data.user_id"),
        ({"title": "t" * 600}, "data.title"),
        ({"due_at": "soon"}, "data.due_at"),
        ({"timezone": "Nowhere/City"}, "data.timezone"),
        ({"recurrence": {"rule": "FREQ=DAILY;INTERVAL=0"}}, "data.recurrence.rule"),
        ({"recurrence": {"rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}}, "data.recurrence.rule"),
        ({"recurrence": {"rule": "FREQ=SECONDLY"}}, "data.recurrence.rule"),
        ({"reminder": {"before": "yesterday"}}, "data.reminder.before"),
        ({"notify": {"email": "not-an-address"}}, "data.notify.email"),
    ],
)
def test_invalid_data_names_the_field_and_stores_nothing(stack, user, overrides, field):
    before = snapshot(stack, user)
    response = stack.post(
        "schedule-next", *cloud_event("todo.task.created", created(user, **overrides), id_="bad")
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert snapshot(stack, user) == before


def test_unsupported_type_for_the_function(stack, user):
    response = stack.post(
        "complete-task", *cloud_event("todo.task.created", created(user), id_="x")
    )
    assert response.status_code == 400
    assert response.json()["field"] == "type"
    assert "complete-task does not handle todo.task.created" in response.json()["error"]
    unknown = stack.post("complete-task", *cloud_event("todo.task.exploded", {}, id_="y"))
    assert unknown.status_code == 400


def test_oversize_body_is_413(stack, user):
    body = json.dumps(created(user, title="x" * 10, padding="p" * (MAX_BODY + 10))).encode()
    headers, _ = cloud_event("todo.task.created", {}, id_="big")
    response = stack.post("schedule-next", headers, body)
    assert response.status_code == 413
    assert response.json()["field"] == "data"


def test_unknown_task_completed_is_404_and_retried_later(stack, user):
    completion = cloud_event(
        "todo.task.completed", {"user_id": user, "task_id": f"{user}.later"}, id_=f"{user}-early"
    )
    early = stack.post("complete-task", *completion)
    assert early.status_code == 404
    assert early.json()["field"] == "data.task_id"
    assert stack.store.get_task(user, f"{user}.later") is None
    # Once `created` has arrived, the broker's retry of the same event succeeds.
    stack.post(
        "schedule-next",
        *cloud_event("todo.task.created", created(user, task_id=f"{user}.later"), id_=f"{user}-c"),
    )
    assert stack.post("complete-task", *completion).status_code == 202


def test_other_users_task_is_403_and_unchanged(stack, user):
    mallory = f"m-{uuid.uuid4().hex[:10]}"
    own = f"own-{uuid.uuid4().hex[:10]}"  # an id that does not spell its owner's name
    stack.post(
        "schedule-next",
        *cloud_event("todo.task.created", created(user, task_id=own), id_=f"{user}-c"),
    )
    before = stack.store.get_task(user, own)
    attempts = [
        ("complete-task", "todo.task.completed", {"user_id": mallory, "task_id": own}),
        (
            "complete-task",
            "todo.task.completed",
            {"user_id": mallory, "task_id": own, "title": "mine now"},
        ),
        (
            "schedule-next",
            "todo.task.updated",
            {"user_id": mallory, "task_id": own, "title": "mine"},
        ),
        ("schedule-next", "todo.task.created", created(mallory, task_id=own)),
        ("schedule-next", "todo.task.deleted", {"user_id": mallory, "task_id": own}),
    ]
    for i, (function, type_, data) in enumerate(attempts):
        response = stack.post(function, *cloud_event(type_, data, id_=f"{user}-m{i}"))
        assert response.status_code == 403, (type_, response.text)
        assert user not in response.json()["error"], "never reveal the owner"
    assert stack.store.get_task(user, own) == before
    assert stack.store.list_tasks(mallory) == []


def test_methods_and_routes(stack):
    for name in stack.functions:
        url = stack.url(name)
        assert httpx.put(url + "/").status_code == 405
        assert httpx.get(url + "/nowhere").status_code == 404


def test_another_users_future_occurrence_ids_cannot_be_squatted(stack, user):
    series = f"series-{uuid.uuid4().hex[:8]}"
    stack.post(
        "schedule-next",
        *cloud_event("todo.task.created", created(user, task_id=series), id_=f"{user}-series"),
    )
    mallory = f"m-{uuid.uuid4().hex[:10]}"
    squat = f"{series}@20261125T090000Z"
    response = stack.post(
        "schedule-next",
        *cloud_event("todo.task.created", created(mallory, task_id=squat), id_=f"{user}-squat"),
    )
    assert response.status_code == 403
    assert stack.store.owner_of(squat) is None
    forged = {
        "user_id": mallory,
        "task_id": f"m-{uuid.uuid4().hex[:6]}",
        "series_id": series,
        "completed_at": "2026-11-24T10:00:00Z",
        "due_at": "2026-11-24T09:00:00Z",
        "recurrence": {"rule": "daily"},
    }
    response = stack.post(
        "schedule-next", *cloud_event("todo.occurrence.requested", forged, id_=f"{user}-f")
    )
    assert response.status_code == 403
    assert stack.store.list_tasks(mallory) == []
