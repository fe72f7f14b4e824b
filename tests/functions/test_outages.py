"""A dependency that is down gets 503 with Retry-After (the broker retries), and the same
event succeeds once it is back, with its effect applied once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from functionset import start_stack

from harness import MailServer, cloud_event, wait_until
from inprocess import LoneFunction
from nextup.reminders import ReminderStatus
from nextup.store import open_store
from nextup_dev.moto import aws_env
from peers import STORE_KINDS, MotoServer, free_port

pytestmark = pytest.mark.fast


def test_store_outage_then_recovery(tmp_path_factory, monkeypatch):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    aws = aws_env(endpoint)
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    table = f"outage-{uuid.uuid4().hex[:8]}"
    env = {
        "NEXTUP_STORE_URL": f"dynamodb://{table}",
        "NEXTUP_RETRY_BUDGET": "1",
        "NEXTUP_BREAKER_RECOVERY": "1",
        **aws,
    }
    function = LoneFunction("schedule-next", env).start()
    moto = None
    try:
        event = cloud_event(
            "todo.task.created", {"user_id": "u1", "task_id": "t1", "title": "x"}, id_="e1"
        )
        down = function_post(function, event)
        assert down.status_code == 503
        assert down.json()["field"] == "store"
        assert int(down.headers["retry-after"]) >= 1
        ready = function_get(function, "/health/readiness")
        assert ready.status_code == 503 and ready.json()["checks"]["store"]["ok"] is False

        moto = MotoServer()
        moto.start_on(port)
        store = open_store(f"dynamodb://{table}")
        store.init()
        # The broker's redelivery (same event) now succeeds, once.
        wait_until(
            lambda: function_post(function, event).status_code == 202,
            timeout=20,
            message="store back",
        )
        task = store.get_task("u1", "t1")
        assert task.title == "x"
        again = function_post(function, event)
        assert again.status_code == 202
        assert again.json()["outcome"] == "registered", "the first answer, replayed"
        assert store.get_task("u1", "t1").version == task.version, "and no second write"
    finally:
        function.stop()
        if moto is not None:
            moto.stop()


def function_post(function: LoneFunction, event):
    headers, body = event
    return function.client.post(function.url, headers=headers, content=body)


def function_get(function: LoneFunction, path: str):
    return function.client.get(function.url + path)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_smtp_outage_then_recovery(kind, tmp_path_factory, moto_server):
    with pytest.MonkeyPatch.context() as mp:
        stack = start_stack(
            kind,
            tmp_path_factory,
            moto_server,
            mp,
            names=("schedule-next", "send-reminder"),
            in_process=True,
        )
        try:
            stack.mail.stop()
            due = {
                "user_id": "u1",
                "task_id": "t1",
                "title": "x",
                "due_at": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
                "reminder": {"before": "PT5M"},
                "notify": {"email": "u1@example.com"},
            }
            stack.post("schedule-next", *cloud_event("todo.task.created", due, id_="c1"))
            tick = cloud_event("dev.knative.sources.ping", None, id_="tick-1")
            down = stack.post("send-reminder", *tick)
            assert down.status_code == 503
            assert down.json()["field"] == "smtp"
            reminder = stack.store.get_reminder("u1", "t1")
            assert reminder.status is ReminderStatus.PENDING
            assert reminder.lease_until is None, "the lease is given back for the retry"
            stack.mail = MailServer(stack.mail.port).start()
            wait_until(
                lambda: stack.post("send-reminder", *tick).status_code == 200,
                timeout=20,
                message="smtp back",
            )
            assert len(stack.mail.received()) == 1
            assert stack.store.get_reminder("u1", "t1").status is ReminderStatus.SENT
        finally:
            stack.stop()


def test_a_function_on_a_fresh_sqlite_path_answers_its_first_event_with_no_init(tmp_path):
    """The embedded store is the zero-configuration path: no `nextup store init`."""
    path = tmp_path / "nowhere-yet" / "state.db"
    function = LoneFunction("schedule-next", {"NEXTUP_STORE_URL": f"sqlite:///{path}"}).start()
    try:
        assert not path.exists(), "starting the function does not touch the store"
        event = cloud_event(
            "todo.task.created", {"user_id": "u1", "task_id": "t1", "title": "x"}, id_="e1"
        )
        first = function_post(function, event)
        assert first.status_code == 202, first.text
        assert first.json()["outcome"] == "registered"
        assert function_get(function, "/health/readiness").status_code == 200
        with open_store(f"sqlite:///{path}") as store:
            assert store.get_task("u1", "t1").title == "x"
    finally:
        function.stop()


def test_until_the_dynamodb_table_exists_every_answer_says_which_and_how(moto_server):
    """Never "circuit open": however many events arrive, each 503 names the table and the
    command that creates it, and so does readiness; once created, the events go through."""
    table = f"later-{uuid.uuid4().hex[:8]}"
    aws = aws_env(moto_server)
    env = {"NEXTUP_STORE_URL": f"dynamodb://{table}", "NEXTUP_BREAKER_FAILURES": "2", **aws}
    function = LoneFunction("schedule-next", env).start()
    expected = (
        f"DynamoDB table '{table}' does not exist: run "
        f"`nextup store init --store dynamodb://{table}`"
    )
    try:
        for n in range(6):  # three times the breaker's failure threshold
            event = cloud_event(
                "todo.task.created", {"user_id": "u1", "task_id": f"t{n}"}, id_=f"e{n}"
            )
            answer = function_post(function, event)
            assert answer.status_code == 503
            assert answer.json() == {"error": expected, "field": "store"}
            assert int(answer.headers["retry-after"]) >= 1
        ready = function_get(function, "/health/readiness")
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"]["error"] == expected
        with pytest.MonkeyPatch.context() as mp:
            for name, value in aws.items():
                mp.setenv(name, value)
            with open_store(f"dynamodb://{table}") as store:
                store.init()
        answer = function_post(
            function, cloud_event("todo.task.created", {"user_id": "u1", "task_id": "t0"}, id_="e0")
        )
        assert answer.status_code == 202, answer.text
    finally:
        function.stop()
