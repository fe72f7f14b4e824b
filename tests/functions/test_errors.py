"""Every client mistake gets a 4xx the broker will not retry, a JSON body naming the
problem, and changes nothing; an unknown task gets 404 so the broker retries."""

from __future__ import annotations

import json
import uuid

import pytest

from harness import cloud_event
from nextup.envelope import MAX_BODY

pytestmark = pytest.mark.fast


def snapshot(stack, user: str) -> tuple:
    store = stack.store
    return (
        [t.model_dump() for t in store.list_tasks(user)],
        [r.model_dump() for r in store.list_reminders(user)],
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
        # Valid rules that never occur from this task's own due_at (2026-11-24).
        ({"recurrence": {"rule": "FREQ=YEARLY;INTERVAL=4;BYYEARDAY=366"}}, "data.recurrence.rule"),
        (
            {"recurrence": {"rule": "FREQ=DAILY;INTERVAL=3659;BYMONTH=2;BYMONTHDAY=29"}},
            "data.recurrence.rule",
        ),
        ({"recurrence": {"rule": "FREQ=WEEKLY;UNTIL=20261101T000000Z"}}, "data.recurrence.rule"),
        ({"recurrence": {"rule": "every \u0663 days"}}, "data.recurrence.rule"),
        ({"notify": {"email": "ann\u0000@example.com"}}, "data.notify.email"),
        ({"notify": {"email": "\u00fc@example.com"}}, "data.notify.email"),
        ({"notify": {"webhook": "http://example.com:99999/"}}, "data.notify.webhook"),
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


def test_another_users_task_id_is_only_ever_the_senders_own(stack, user):
    """Ids are per user: whatever mallory sends naming the id of one of `user`'s tasks acts
    on mallory's own task of that id (or finds none), never on `user`'s, and no answer
    tells whether `user` has such a task (the same answers as for an id nobody has)."""
    mallory = f"m-{uuid.uuid4().hex[:10]}"
    own = f"own-{uuid.uuid4().hex[:10]}"
    nobodys = f"none-{uuid.uuid4().hex[:10]}"
    stack.post(
        "schedule-next",
        *cloud_event("todo.task.created", created(user, task_id=own), id_=f"{user}-c"),
    )
    before = snapshot(stack, user)

    def attempts(task_id: str) -> list[tuple[str, str, dict]]:
        return [
            ("complete-task", "todo.task.completed", {"user_id": mallory, "task_id": task_id}),
            ("schedule-next", "todo.task.updated", {"user_id": mallory, "task_id": task_id}),
        ]

    for i, (function, type_, data) in enumerate(attempts(own) + attempts(nobodys)):
        response = stack.post(function, *cloud_event(type_, data, id_=f"{user}-m{i}"))
        assert response.status_code == 404, (type_, response.text)  # not known: mallory's
        assert user not in response.text
    for i, (type_, data) in enumerate(
        [
            ("todo.task.created", created(mallory, task_id=own, title="mallory's")),
            ("todo.task.deleted", {"user_id": mallory, "task_id": own}),
        ]
    ):
        response = stack.post("schedule-next", *cloud_event(type_, data, id_=f"{user}-x{i}"))
        assert response.status_code == 202, response.text
    assert snapshot(stack, user) == before
    [theirs] = stack.store.list_tasks(mallory)
    assert (theirs.title, theirs.status.value) == ("mallory's", "deleted")


def test_methods_and_routes(stack):
    for name in stack.functions:
        url = stack.url(name)
        assert stack.caller.put(url + "/").status_code == 405
        assert stack.caller.get(url + "/nowhere").status_code == 404


def test_another_users_future_occurrence_ids_cannot_be_squatted(stack, user):
    """Mallory creating the id `user`'s series will give its next occurrence, or asking
    for an occurrence of `user`'s series, touches only mallory's own ids: `user`'s series
    still gets its next occurrence, once."""
    series = f"series-{uuid.uuid4().hex[:8]}"
    daily = created(user, task_id=series, recurrence={"rule": "daily"})
    stack.post("schedule-next", *cloud_event("todo.task.created", daily, id_=f"{user}-series"))
    mallory = f"m-{uuid.uuid4().hex[:10]}"
    squat = f"{series}@20261125T090000Z"
    response = stack.post(
        "schedule-next",
        *cloud_event("todo.task.created", created(mallory, task_id=squat), id_=f"{user}-squat"),
    )
    assert response.status_code == 202
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
    assert response.status_code == 200  # mallory's own series, continued
    done = stack.post(
        "complete-task",
        *cloud_event(
            "todo.task.completed",
            {"user_id": user, "task_id": series, "completed_at": "2026-11-24T10:00:00Z"},
            id_=f"{user}-done",
        ),
    )
    request = cloud_event(
        "todo.occurrence.requested",
        json.loads(done.content),
        id_=done.headers["ce-id"],
        source=done.headers["ce-source"],
    )
    assert stack.post("schedule-next", *request).status_code == 200
    mine = [t for t in stack.store.list_tasks(user) if t.parent_task_id == series]
    assert [t.task_id for t in mine] == [squat]
    # Mallory's forged request found mallory's own squat there: nothing else was made.
    assert [t.task_id for t in stack.store.list_tasks(mallory)] == [squat]
