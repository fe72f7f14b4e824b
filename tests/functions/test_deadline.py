"""A delivery has a deadline (`NEXTUP_EVENT_DEADLINE`, below a Trigger's 30 s timeout):
every retry in it stops there and the broker gets 503 with Retry-After in time, however
long the retry budget, against real function processes and peers that never answer or
answer 503. A sweep stops claiming as the deadline nears, gives back the claims it could
not send, and leaves the rest for the next tick.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from harness import FunctionProcess, HttpRecorder, RawPeer, cloud_event
from nextup.reminders import ReminderStatus
from nextup.store import open_store

DEADLINE = 2.0
# What answering takes beyond the deadline: the reply itself, a store write or two, a
# loaded CI machine. Well under what the retries would have taken without a deadline.
MARGIN = 1.5


def post(function: FunctionProcess, event: tuple[dict, bytes]) -> tuple[httpx.Response, float]:
    headers, body = event
    started = time.monotonic()
    response = httpx.post(function.url, headers=headers, content=body, timeout=60)
    return response, time.monotonic() - started


@pytest.fixture
def store_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    store.init()
    yield url
    store.close()


@pytest.fixture(params=["silent", "503"])
def failing_sink(request):
    """A sink that never says a word, or answers 503 to everything."""
    if request.param == "silent":
        peer = RawPeer()
        yield f"http://127.0.0.1:{peer.port}/"
        peer.stop()
    else:
        recorder = HttpRecorder(respond=lambda _: (503, {}, b"")).start()
        yield f"{recorder.url}/sink"
        recorder.stop()


def test_a_delivery_answers_503_at_its_deadline_not_after_the_retry_budget(store_url, failing_sink):
    env = {
        "NEXTUP_STORE_URL": store_url,
        "K_SINK": failing_sink,
        "NEXTUP_EVENT_DEADLINE": str(DEADLINE),
        # Without the deadline the sink would be retried for a minute: a budget far past
        # the Trigger's timeout, and slow retries of a sink that answers 503 at once.
        "NEXTUP_RETRY_BUDGET": "60",
        "NEXTUP_RETRY_SINK_ATTEMPTS": "100",
        "NEXTUP_RETRY_SINK_DELAY": "0.3",
        "NEXTUP_RETRY_SINK_MAX_DELAY": "0.3",
        "NEXTUP_BREAKER_FAILURES": "1000",
    }
    function = FunctionProcess("schedule-next", env).start()
    try:
        user = f"u{uuid.uuid4().hex[:8]}"
        now = datetime.now(UTC)
        # A completed occurrence of a weekly series: the next one is stored, and its
        # `todo.task.scheduled` has to reach the sink.
        requested = {
            "user_id": user,
            "task_id": f"{user}.t1",
            "series_id": f"{user}.s1",
            "title": "x",
            "due_at": now.isoformat(),
            "completed_at": now.isoformat(),
            "recurrence": {"rule": "FREQ=WEEKLY"},
        }
        event = cloud_event("todo.occurrence.requested", requested, id_=f"{user}-requested")
        response, elapsed = post(function, event)
        assert response.status_code == 503, response.text
        assert response.json()["field"] == "sink"
        assert int(response.headers["retry-after"]) >= 1
        assert elapsed < DEADLINE + MARGIN, f"answered after {elapsed:.2f} s"
        # The next occurrence is stored; its event waits in the receipt for the redelivery.
        store = open_store(store_url)
        try:
            assert store.list_tasks(user), "the next occurrence"
        finally:
            store.close()
    finally:
        function.stop()


def test_a_sweep_stops_claiming_as_its_deadline_nears_and_gives_back_what_it_held(store_url):
    """Twenty reminders due, an SMTP server that never answers: the first sends (as many
    as run at once) are cut before the deadline and their claims given back; the rest are
    never claimed. The delivery answers 503 in time, and every reminder is as it was."""
    sink = HttpRecorder(respond=lambda _: (202, {}, b"")).start()
    smtp = RawPeer()  # accepts connections (the kernel does) and never greets
    deadline = 3.0
    env = {
        "NEXTUP_STORE_URL": store_url,
        "K_SINK": f"{sink.url}/sink",
        "NEXTUP_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
        "NEXTUP_EVENT_DEADLINE": str(deadline),
        "NEXTUP_RETRY_BUDGET": "60",
        "NEXTUP_BREAKER_FAILURES": "1000",
    }
    schedule = FunctionProcess("schedule-next", env).start()
    sender = None
    try:
        user = f"u{uuid.uuid4().hex[:8]}"
        due_at = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        ids = [f"{user}.r{n}" for n in range(20)]
        for task_id in ids:
            data = {
                "user_id": user,
                "task_id": task_id,
                "title": "Call mum",
                "due_at": due_at,
                "reminder": {"before": "PT10M"},
                "notify": {"email": f"{user}@example.com"},
            }
            created, _ = post(schedule, cloud_event("todo.task.created", data, id_=task_id))
            assert created.status_code == 202, created.text
        sender = FunctionProcess("send-reminder", env).start()
        tick = cloud_event("dev.knative.sources.ping", {}, id_=uuid.uuid4().hex)
        response, elapsed = post(sender, tick)
        assert response.status_code == 503, response.text
        assert response.json()["field"] == "smtp"
        assert int(response.headers["retry-after"]) >= 1
        assert elapsed < deadline + MARGIN, f"answered after {elapsed:.2f} s"
        store = open_store(store_url)
        try:
            stored = [store.get_reminder(user, task_id) for task_id in ids]
        finally:
            store.close()
        assert all(r.status is ReminderStatus.PENDING for r in stored)
        assert all(r.lease_until is None and r.lease_owner is None for r in stored), (
            "claims given back, or never made"
        )
        assert all(r.attempts == 0 for r in stored), "no attempt counted against anyone"
    finally:
        schedule.stop()
        if sender is not None:
            sender.stop()
        smtp.stop()
        sink.stop()
