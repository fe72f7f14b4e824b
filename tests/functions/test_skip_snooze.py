"""Skip and snooze through the real functions (in-process, each store kind): the answers a
producer gets, what is stored, and what is refused and why."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from harness import cloud_event
from nextup.envelope import parse_http
from nextup.reminders import ReminderStatus
from nextup.tasks import TaskStatus

pytestmark = pytest.mark.fast


def daily(user: str, name: str = "t", **overrides) -> dict:
    data = {
        "user_id": user,
        "task_id": f"{user}.{name}",
        "title": "Stretch",
        "due_at": "2026-11-23T09:00:00+01:00",
        "timezone": "Europe/Berlin",
        "recurrence": {"rule": "every weekday"},
        "reminder": {"before": "PT15M"},
        "notify": {"email": "ann@example.com"},
    }
    data.update(overrides)
    return data


def create(stack, data: dict) -> None:
    response = stack.post(
        "schedule-next", *cloud_event("todo.task.created", data, id_=f"{data['task_id']}-c")
    )
    assert response.status_code == 202, response.text


def reply_of(response: httpx.Response):
    assert response.status_code == 200, response.text
    return parse_http(dict(response.headers), response.content)


def stored(stack, user: str) -> tuple:
    return (
        [t.model_dump() for t in stack.store.list_tasks(user)],
        [r.model_dump() for r in stack.store.list_reminders(user)],
    )


def test_a_skip_asks_for_the_next_occurrence_which_lists_what_comes_after_it(stack, user):
    create(stack, daily(user))
    skip = cloud_event(
        "todo.occurrence.skipped",
        {"user_id": user, "task_id": f"{user}.t", "skipped_at": "2026-11-23T08:00:00+01:00"},
        id_=f"{user}-skip",
    )
    first = stack.post("complete-task", *skip)
    request = reply_of(first)
    assert request["type"] == "todo.occurrence.requested"
    completed_at = datetime.fromisoformat(request.data["completed_at"])
    assert completed_at == datetime(2026, 11, 23, 7, tzinfo=UTC)
    # A redelivery is answered as the first delivery was: the same event, the same id.
    again = reply_of(stack.post("complete-task", *skip))
    assert again["id"] == request["id"] and again.data == request.data
    task = stack.store.get_task(user, f"{user}.t")
    assert task.status is TaskStatus.SKIPPED
    assert stack.store.get_reminder(user, f"{user}.t").status is ReminderStatus.CANCELLED

    headers = {
        "ce-specversion": "1.0",
        "ce-id": request["id"],
        "ce-source": request["source"],
        "ce-type": request["type"],
        "content-type": "application/json",
    }
    scheduled = reply_of(
        stack.post("schedule-next", headers, httpx.Request("POST", "/", json=request.data).content)
    )
    assert scheduled["type"] == "todo.task.scheduled"
    # Skipped on Monday 23rd: Tuesday's occurrence, then Wednesday, Thursday, Friday.
    assert scheduled.data["due_at"] == "2026-11-24T09:00:00+01:00"
    assert scheduled.data["upcoming"] == [
        "2026-11-25T09:00:00+01:00",
        "2026-11-26T09:00:00+01:00",
        "2026-11-27T09:00:00+01:00",
    ]


SKIP = ("complete-task", "todo.occurrence.skipped")
SNOOZE = ("schedule-next", "todo.reminder.snoozed")


@pytest.mark.parametrize(
    ("event", "data", "status", "field"),
    [
        (SKIP, {"task_id": "unknown"}, 404, "data.task_id"),  # its created event may be coming
        (SKIP, {"task_id": "one-off"}, 400, "data.task_id"),  # no series to skip within
        (SKIP, {"skipped_at": "1700-01-01T00:00:00Z"}, 400, "data.skipped_at"),
        (SNOOZE, {"for": "PT0S"}, 400, "data.for"),
        (SNOOZE, {"for": "P400D"}, 400, "data.for"),
        (SNOOZE, {"for": "ten minutes"}, 400, "data.for"),
        (SNOOZE, {"for": "PT10M", "until": "2026-11-23T10:00:00Z"}, 400, "data"),
        (SNOOZE, {}, 400, "data"),
        (SNOOZE, {"for": "PT10M", "task_id": "unknown"}, 404, "data.task_id"),
        (SNOOZE, {"for": "PT10M", "task_id": "quiet"}, 400, "data.task_id"),  # no reminder
    ],
)
def test_a_skip_or_snooze_that_cannot_apply_is_refused_and_changes_nothing(
    stack, user, event, data, status, field
):
    create(stack, daily(user))
    create(stack, daily(user, "one-off", recurrence=None))
    create(stack, daily(user, "quiet", reminder=None))
    before = stored(stack, user)
    data = dict(data)  # the parameter is shared by every store kind's run
    body = {"user_id": user, "task_id": f"{user}.{data.pop('task_id', 't')}", **data}
    function, type_ = event
    response = stack.post(function, *cloud_event(type_, body, id_=f"{user}-refused"))
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert stored(stack, user) == before


def test_a_snooze_moves_the_reminder_and_its_redelivery_changes_nothing_more(stack, user):
    create(stack, daily(user))
    snooze = cloud_event(
        "todo.reminder.snoozed",
        {"user_id": user, "task_id": f"{user}.t", "until": "2026-11-23T08:55:00"},
        id_=f"{user}-z",
    )
    response = stack.post("schedule-next", *snooze)
    assert response.status_code == 202, response.text
    assert response.json()["outcome"] == "snoozed"
    reminder = stack.store.get_reminder(user, f"{user}.t")
    # A time without an offset is read in the task's zone (Berlin, UTC+1 in November).
    assert reminder.remind_at == datetime(2026, 11, 23, 7, 55, tzinfo=UTC)
    assert reminder.planned_at == datetime(2026, 11, 23, 7, 45, tzinfo=UTC)
    before = stored(stack, user)
    assert stack.post("schedule-next", *snooze).json() == response.json()
    assert stored(stack, user) == before
    # An update that keeps the due time keeps the snooze.
    update = cloud_event(
        "todo.task.updated",
        {"user_id": user, "task_id": f"{user}.t", "title": "Stretch more"},
        id_=f"{user}-u",
    )
    assert stack.post("schedule-next", *update).status_code == 202
    assert stack.store.get_reminder(user, f"{user}.t").remind_at == reminder.remind_at


def test_a_snooze_for_a_while_counts_from_the_events_time(stack, user):
    create(stack, daily(user))
    snooze = cloud_event(
        "todo.reminder.snoozed",
        {"user_id": user, "task_id": f"{user}.t", "for": "PT10M"},
        id_=f"{user}-z",
        time="2026-11-23T07:45:30Z",
    )
    assert stack.post("schedule-next", *snooze).status_code == 202
    reminder = stack.store.get_reminder(user, f"{user}.t")
    assert reminder.remind_at == datetime(2026, 11, 23, 7, 55, 30, tzinfo=UTC)


def test_no_user_can_skip_or_snooze_another_users_task(stack, user):
    create(stack, daily(user))
    before = stored(stack, user)
    intruder = f"{user}-other"
    target = {"user_id": intruder, "task_id": f"{user}.t"}
    for function, type_, extra in (
        ("complete-task", "todo.occurrence.skipped", {}),
        ("schedule-next", "todo.reminder.snoozed", {"for": "PT1H"}),
    ):
        response = stack.post(
            function, *cloud_event(type_, {**target, **extra}, id_=f"{intruder}-{type_}")
        )
        # To the intruder the task does not exist; the owner's items are untouched.
        assert response.status_code == 404, response.text
    assert stored(stack, user) == before


def test_a_snooze_of_a_closed_task_changes_nothing(stack, user):
    create(stack, daily(user))
    done = cloud_event(
        "todo.task.completed", {"user_id": user, "task_id": f"{user}.t"}, id_=f"{user}-d"
    )
    assert stack.post("complete-task", *done).status_code == 200
    before = stored(stack, user)
    snooze = cloud_event(
        "todo.reminder.snoozed", {"user_id": user, "task_id": f"{user}.t", "for": "PT5M"}, id_="z"
    )
    response = stack.post("schedule-next", *snooze)
    assert response.status_code == 202 and response.json()["outcome"] == "noop"
    assert stored(stack, user) == before


def test_a_snooze_id_reused_with_other_data_is_refused_and_the_first_snooze_stands(stack, user):
    create(stack, daily(user))
    first = cloud_event(
        "todo.reminder.snoozed",
        {"user_id": user, "task_id": f"{user}.t", "for": "PT10M"},
        id_=f"{user}-z",
        time="2026-11-23T07:45:00Z",
    )
    assert stack.post("schedule-next", *first).status_code == 202
    before = stored(stack, user)
    other = cloud_event(
        "todo.reminder.snoozed",
        {"user_id": user, "task_id": f"{user}.t", "for": "P30D"},
        id_=f"{user}-z",
        time="2026-11-23T07:45:00Z",
    )
    response = stack.post("schedule-next", *other)
    assert response.status_code == 422, response.text
    assert response.json()["error"]
    assert stored(stack, user) == before
    assert stack.store.get_reminder(user, f"{user}.t").remind_at == datetime(
        2026, 11, 23, 7, 55, tzinfo=UTC
    )
