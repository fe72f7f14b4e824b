"""send-reminder: a due reminder reaches the SMTP server once, however often the tick
arrives; never for a completed task; by webhook or backend address too."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from harness import cloud_event, wait_until
from nextup.envelope import parse_http
from nextup.reminders import ReminderStatus

pytestmark = pytest.mark.fast


def due_task(user: str, task_id: str = "r1", **overrides) -> dict:
    # Due in a minute, reminded ten minutes before: the reminder is due now.
    data = {
        "user_id": user,
        "task_id": f"{user}.{task_id}",  # task ids are global across users
        "title": "Call mum",
        "due_at": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
        "reminder": {"before": "PT10M"},
        "notify": {"email": f"{user}@example.com"},
    }
    data.update(overrides)
    return data


def tick(stack, id_: str | None = None) -> httpx.Response:
    headers, body = cloud_event(
        "dev.knative.sources.ping",
        {"sweep": "reminders"},
        id_=id_ or uuid.uuid4().hex,
        source="/apis/v1/namespaces/nextup/pingsources/reminder-sweep",
    )
    return stack.post("send-reminder", headers, body)


def mails_to(stack, address: str):
    return [m for m in stack.mail.received() if m["To"] == address]


def sweep_until_quiet(stack) -> None:
    """Tick until a sweep sends nothing (reply mode sends one reminder per delivery)."""
    for _ in range(50):
        response = tick(stack)
        assert response.status_code in (200, 202), response.text
        if response.status_code == 202:
            return
    raise AssertionError("reminders kept coming")


def test_due_reminder_is_mailed_once_however_many_ticks(stack, user):
    stack.post("schedule-next", *cloud_event("todo.task.created", due_task(user), id_=f"{user}-c"))
    first = tick(stack, id_=f"{user}-tick")
    sweep_until_quiet(stack)
    # The same tick redelivered, new ticks in a burst, concurrently.
    assert tick(stack, id_=f"{user}-tick").status_code == first.status_code
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: tick(stack).status_code, range(16)))
    assert set(statuses) <= {200, 202}
    mails = mails_to(stack, f"{user}@example.com")
    assert len(mails) == 1
    mail = mails[0]
    assert mail["Subject"] == "Reminder: Call mum"
    reminder = stack.store.get_reminder(user, f"{user}.r1")
    assert reminder.status is ReminderStatus.SENT
    assert mail["Message-ID"] == reminder.message_id
    assert reminder.channel == "email"


def test_sent_event_is_the_reply(stack, user):
    sweep_until_quiet(stack)
    stack.post("schedule-next", *cloud_event("todo.task.created", due_task(user), id_=f"{user}-c"))
    response = tick(stack)
    event = parse_http(dict(response.headers), response.content)
    assert event["type"] == "todo.reminder.sent"
    assert event.data["user_id"] == user
    assert event.data["channel"] == "email"
    assert event.data["message_id"] == stack.store.get_reminder(user, f"{user}.r1").message_id


def test_completed_or_deleted_tasks_are_never_reminded(stack, user):
    stack.post(
        "schedule-next", *cloud_event("todo.task.created", due_task(user, "done"), id_=f"{user}-c1")
    )
    stack.post(
        "schedule-next", *cloud_event("todo.task.created", due_task(user, "gone"), id_=f"{user}-c2")
    )
    stack.post(
        "complete-task",
        *cloud_event(
            "todo.task.completed", {"user_id": user, "task_id": f"{user}.done"}, id_=f"{user}-d"
        ),
    )
    stack.post(
        "schedule-next",
        *cloud_event(
            "todo.task.deleted", {"user_id": user, "task_id": f"{user}.gone"}, id_=f"{user}-x"
        ),
    )
    sweep_until_quiet(stack)
    assert mails_to(stack, f"{user}@example.com") == []
    assert stack.store.get_reminder(user, f"{user}.done").status is ReminderStatus.CANCELLED
    assert stack.store.get_reminder(user, f"{user}.gone").status is ReminderStatus.CANCELLED


def test_webhook_reminder_carries_an_idempotency_key(stack, user):
    hook = f"{stack.web.url}/hooks/{user}"
    task = due_task(user, "w1", notify={"webhook": hook})
    stack.post("schedule-next", *cloud_event("todo.task.created", task, id_=f"{user}-c"))
    sweep_until_quiet(stack)
    calls = [r for r in stack.web.requests if r.path == f"/hooks/{user}"]
    assert len(calls) == 1
    assert calls[0].json()["task_id"] == f"{user}.w1"
    assert (
        calls[0].headers["idempotency-key"]
        == stack.store.get_reminder(user, f"{user}.w1").message_id
    )


def test_address_from_the_backend_and_unknown_users(stack, user):
    stack.post(
        "schedule-next",
        *cloud_event("todo.task.created", due_task(user, "b1", notify=None), id_=f"{user}-c"),
    )
    ghost = f"ghost-{user}"
    stack.post(
        "schedule-next",
        *cloud_event("todo.task.created", due_task(ghost, "g1", notify=None), id_=f"{user}-g"),
    )
    sweep_until_quiet(stack)
    assert len(mails_to(stack, f"{user}@users.example")) == 1
    failed = stack.store.get_reminder(ghost, f"{ghost}.g1")
    assert failed.status is ReminderStatus.FAILED
    assert "unknown user" in failed.error


def test_openfaas_cron_connector_call_is_a_tick(stack, user):
    sweep_until_quiet(stack)
    stack.post("schedule-next", *cloud_event("todo.task.created", due_task(user), id_=f"{user}-c"))
    response = stack.caller.post(
        stack.url("send-reminder"),
        headers={"X-Connector": "cron-connector", "X-Call-Id": uuid.uuid4().hex},
        content=b"",
    )
    assert response.status_code == 200, response.text
    wait_until(lambda: mails_to(stack, f"{user}@example.com"), message="the reminder mail")


def test_reminder_due_event_for_one_user(stack, user):
    sweep_until_quiet(stack)
    other = f"{user}-other"
    stack.post(
        "schedule-next", *cloud_event("todo.task.created", due_task(other, "o1"), id_=f"{user}-o")
    )
    stack.post(
        "schedule-next", *cloud_event("todo.task.created", due_task(user, "m1"), id_=f"{user}-m")
    )
    response = stack.post(
        "send-reminder", *cloud_event("todo.reminder.due", {"user_id": user}, id_=f"{user}-due")
    )
    assert response.status_code == 200
    assert len(mails_to(stack, f"{user}@example.com")) == 1
    assert mails_to(stack, f"{other}@example.com") == []
    assert stack.store.get_reminder(other, f"{other}.o1").status is ReminderStatus.PENDING


def test_webhook_to_a_private_address_is_refused(stack, user):
    metadata = "http://169.254.169.254/latest/meta-data/"
    task = due_task(user, "ssrf", notify={"webhook": metadata})
    stack.post("schedule-next", *cloud_event("todo.task.created", task, id_=f"{user}-c"))
    sweep_until_quiet(stack)
    reminder = stack.store.get_reminder(user, f"{user}.ssrf")
    assert reminder.status is ReminderStatus.FAILED
    assert "non-public" in reminder.error


def test_without_a_sink_the_rest_waits_and_the_log_says_why(stack, user):
    sweep_until_quiet(stack)
    for name in ("a", "b"):
        stack.post(
            "schedule-next",
            *cloud_event("todo.task.created", due_task(user, name), id_=f"{user}-{name}"),
        )
    response = tick(stack)
    assert response.status_code == 200, "one reminder announced as the reply"
    warnings = [
        line
        for line in stack.functions["send-reminder"].log_lines()
        if line.get("level") == "warning" and "K_SINK" in line.get("msg", "")
    ]
    assert warnings and warnings[-1]["left"] >= 1
    sweep_until_quiet(stack)
    assert len(mails_to(stack, f"{user}@example.com")) == 2, (
        "nothing dropped: the next tick sent it"
    )
    ready = stack.get("send-reminder", "/health/readiness").json()
    assert ready["checks"]["sink"]["ok"] is False and "K_SINK" in ready["checks"]["sink"]["error"]
