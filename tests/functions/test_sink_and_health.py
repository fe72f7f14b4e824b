"""Sink mode (K_SINK): emitted events are POSTed in binary mode and the function answers
202; health: readiness names what is down, the canary reports the eventing delay."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from functionset import backend_answer, start_stack

from harness import MailServer, cloud_event, wait_until
from nextup.envelope import parse_http
from nextup.services import CHECK_TTL

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def stack(tmp_path_factory, moto_server) -> Iterator:
    with pytest.MonkeyPatch.context() as mp:
        s = start_stack("sqlite", tmp_path_factory, moto_server, mp, sink=True, in_process=True)
        yield s
        s.stop()


def sink_events(stack) -> list:
    return [
        parse_http(r.headers, r.body)
        for r in stack.web.requests
        if r.path == "/sink" and r.method == "POST"
    ]


def due(user: str, task_id: str) -> dict:
    return {
        "user_id": user,
        "task_id": f"{user}.{task_id}",  # task ids are global across users
        "title": task_id,
        "due_at": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
        "reminder": {"before": "PT5M"},
        "notify": {"email": f"{user}@example.com"},
        "recurrence": {"rule": "daily"},
    }


def test_emitted_events_go_to_the_sink(stack, user):
    stack.post("schedule-next", *cloud_event("todo.task.created", due(user, "t1"), id_=f"{user}-c"))
    response = stack.post(
        "complete-task",
        *cloud_event(
            "todo.task.completed", {"user_id": user, "task_id": f"{user}.t1"}, id_=f"{user}-d"
        ),
    )
    assert response.status_code == 202
    (emitted_id,) = response.json()["emitted"]
    events = [e for e in sink_events(stack) if e["id"] == emitted_id]
    assert len(events) == 1
    assert events[0]["type"] == "todo.occurrence.requested"
    assert events[0]["source"] == "/nextup/complete-task"
    # Redelivered: same answer, nothing posted twice.
    again = stack.post(
        "complete-task",
        *cloud_event(
            "todo.task.completed", {"user_id": user, "task_id": f"{user}.t1"}, id_=f"{user}-d"
        ),
    )
    assert again.json()["emitted"] == [emitted_id]
    assert len([e for e in sink_events(stack) if e["id"] == emitted_id]) == 1


def test_one_tick_sends_every_due_reminder(stack, user):
    for i in range(3):
        stack.post(
            "schedule-next",
            *cloud_event("todo.task.created", due(user, f"r{i}"), id_=f"{user}-c{i}"),
        )
    response = stack.post(
        "send-reminder", *cloud_event("dev.knative.sources.ping", None, id_=uuid.uuid4().hex)
    )
    assert response.status_code == 202
    mine = [m for m in stack.mail.received() if m["To"] == f"{user}@example.com"]
    assert len(mine) == 3
    sent = [
        e
        for e in sink_events(stack)
        if e["type"] == "todo.reminder.sent" and e.data["user_id"] == user
    ]
    assert sorted(e.data["task_id"] for e in sent) == [f"{user}.r0", f"{user}.r1", f"{user}.r2"]


def test_sink_outage_is_503_then_succeeds(stack, user):
    stack.post("schedule-next", *cloud_event("todo.task.created", due(user, "t1"), id_=f"{user}-c"))
    stack.web.respond = lambda r: (503, {}, b"") if r.path == "/sink" else backend_answer(r)
    try:
        completion = cloud_event(
            "todo.task.completed", {"user_id": user, "task_id": f"{user}.t1"}, id_=f"{user}-d"
        )
        down = stack.post("complete-task", *completion)
        assert down.status_code == 503
        assert int(down.headers["retry-after"]) >= 1
        assert down.json()["field"] == "sink"
    finally:
        stack.web.respond = backend_answer
    # The broker redelivers once the sink is back: the event goes out, the task was completed once.
    wait_until(
        lambda: stack.post("complete-task", *completion).status_code == 202,
        timeout=15,
        message="sink back",
    )
    task = stack.store.get_task(user, f"{user}.t1")
    assert task.completed_by is not None


def test_health_report_and_canary(stack):
    report = stack.get("health", "/health")
    assert report.status_code == 200, report.text
    assert set(report.json()["checks"]) == {"store", "smtp", "sink", "backend"}
    assert all(check["ok"] for check in report.json()["checks"].values())
    sent_at = (datetime.now(UTC) - timedelta(seconds=2)).isoformat()
    response = stack.post(
        "health", *cloud_event("todo.health.probe", {"sent_at": sent_at}, id_=uuid.uuid4().hex)
    )
    assert response.status_code == 202
    (reported,) = [e for e in sink_events(stack) if e["id"] == response.json()["emitted"][0]]
    assert reported["type"] == "todo.health.reported"
    assert reported.data["ok"] is True
    assert reported.data["delay_ms"] >= 2000


def test_readiness_names_the_dependency_that_is_down(stack):
    for name in stack.functions:
        for path in ("/health/liveness", "/_/health"):
            assert stack.get(name, path).json()["status"] == "alive"
        for path in ("/health/readiness", "/_/ready"):
            assert stack.get(name, path).status_code == 200
    stack.mail.stop()
    try:

        def down() -> httpx.Response | None:
            answer = stack.get("send-reminder", "/health/readiness")
            return answer if answer.status_code == 503 else None

        # Checks answer for a few seconds (CHECK_TTL): wait for the next real one.
        ready = wait_until(down, 3 * CHECK_TTL, "readiness to see the SMTP server gone")
        checks = ready.json()["checks"]
        assert checks["smtp"]["ok"] is False and checks["smtp"]["error"]
        assert checks["store"]["ok"] is True
        assert stack.get("complete-task", "/_/ready").status_code == 200
    finally:
        stack.mail.start()


class CountingMail(MailServer):
    """The SMTP server, counting NOOPs: what a readiness check of SMTP sends."""

    noops = 0

    async def handle_NOOP(self, server, session, envelope, arg):
        CountingMail.noops += 1
        return "250 OK"


def test_readiness_probes_cost_one_smtp_check_per_interval_however_many(stack):
    """A hundred GETs of readiness, most of them at once: a handful of SMTP checks, not a
    hundred sessions (anyone who can reach the probe could otherwise flood the server)."""
    port = stack.mail.port
    stack.mail.stop()
    stack.mail = CountingMail(port).start()
    url = stack.url("send-reminder") + "/health/readiness"
    wait_until(
        lambda: stack.caller.get(url).status_code == 200, 3 * CHECK_TTL, "SMTP checked again"
    )
    CountingMail.noops = 0

    async def probe_many() -> list[int]:
        async with httpx.AsyncClient(timeout=30, transport=stack.async_transport) as client:
            answers = await asyncio.gather(*(client.get(url) for _ in range(100)))
        return [a.status_code for a in answers]

    started = time.monotonic()
    statuses = asyncio.run(probe_many())
    elapsed = time.monotonic() - started
    assert statuses == [200] * 100
    # One check per CHECK_TTL at most (plus the one a probe just before the burst began).
    assert CountingMail.noops <= 2 + int(elapsed / CHECK_TTL), CountingMail.noops


def test_ping_tick_runs_the_canary(stack):
    headers, body = cloud_event(
        "dev.knative.sources.ping",
        {"probe": "canary"},
        id_=uuid.uuid4().hex,
        source="/apis/v1/namespaces/nextup/pingsources/health-canary",
    )
    response = stack.post("health", headers, body)
    assert response.status_code == 202
    (reported,) = [e for e in sink_events(stack) if e["id"] == response.json()["emitted"][0]]
    assert reported["type"] == "todo.health.reported"
    assert set(reported.data["checks"]) == {"store", "smtp", "sink", "backend"}
    assert reported.data["delay_ms"] is not None


def test_an_event_a_crash_left_behind_goes_out_on_the_next_sweep(stack, user):
    """A reminder marked sent whose event never left (the crash window) is announced by
    the next tick, under the id derived from the reminder, and not mailed again."""
    from nextup import reminders

    stack.post("schedule-next", *cloud_event("todo.task.created", due(user, "x1"), id_=f"{user}-c"))
    pending = stack.store.get_reminder(user, f"{user}.x1")
    claimed = stack.store.claim_reminder(
        user, f"{user}.x1", owner="crashed", now=datetime.now(UTC), lease=timedelta(minutes=2)
    )
    message_id = reminders.message_id(claimed)
    stack.store.save_reminder(
        reminders.mark_sent(
            claimed, channel="email", message_id=message_id, sent_at=datetime.now(UTC)
        )
    )
    assert pending.status == "pending"
    response = stack.post(
        "send-reminder", *cloud_event("dev.knative.sources.ping", None, id_=uuid.uuid4().hex)
    )
    assert response.status_code == 202
    assert response.json()["announced_late"] >= 1
    (sent,) = [
        e
        for e in sink_events(stack)
        if e["type"] == "todo.reminder.sent" and e.data["task_id"] == f"{user}.x1"
    ]
    assert sent.data["message_id"] == message_id
    assert stack.store.get_reminder(user, f"{user}.x1").announced is True
    assert [m for m in stack.mail.received() if m["To"] == f"{user}@example.com"] == []
    # Announced now: later sweeps leave it alone.
    stack.post(
        "send-reminder", *cloud_event("dev.knative.sources.ping", None, id_=uuid.uuid4().hex)
    )
    again = [
        e
        for e in sink_events(stack)
        if e["type"] == "todo.reminder.sent" and e.data["task_id"] == f"{user}.x1"
    ]
    assert len(again) == 1
