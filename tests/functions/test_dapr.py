"""Under a Dapr sidecar the functions publish what they emit through the sidecar's publish
API, since a Dapr subscriber cannot reply with an event: a recurring task completed
through Dapr gets its next occurrence. daprd cannot run here, so a real local HTTP server
stands in for the sidecar (its publish and health endpoints) and the test delivers what
was published the way Dapr would, to the function that subscribes to its topic."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import pytest
from functionset import Stack, start_stack

from harness import HttpRecorder, Recorded, wait_until
from nextup.tasks import TaskStatus
from peers import STORE_KINDS, free_port

pytestmark = pytest.mark.fast


class Sidecar:
    """The sidecar's HTTP API as far as the functions use it: `POST /v1.0/publish/<pubsub>/
    <topic>` (204, or whatever `failing` says) and `GET /v1.0/healthz`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.published: list[tuple[str, str, dict]] = []
        self.failing: int | None = None

    def __call__(self, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        if request.method == "GET" and request.path == "/v1.0/healthz":
            return 204, {}, b""
        parts = request.path.split("/")
        if request.method != "POST" or parts[1:3] != ["v1.0", "publish"] or len(parts) != 5:
            return 404, {}, b""
        if self.failing is not None:
            return self.failing, {"content-type": "application/json"}, b'{"errorCode":"ERR"}'
        assert request.headers["content-type"] == "application/cloudevents+json"
        with self.lock:
            self.published.append((parts[3], parts[4], request.json()))
        return 204, {}, b""

    def events(self, type_: str) -> list[tuple[str, str, dict]]:
        with self.lock:
            return [p for p in self.published if p[2]["type"] == type_]


@pytest.fixture(scope="module", params=STORE_KINDS)
def dapr(request, tmp_path_factory, moto_server) -> Iterator[tuple[Stack, HttpRecorder]]:
    sidecar = HttpRecorder(respond=Sidecar()).start()
    port = sidecar.url.rsplit(":", 1)[1]
    with pytest.MonkeyPatch.context() as mp:
        stack = start_stack(
            request.param,
            tmp_path_factory,
            moto_server,
            mp,
            names=("complete-task", "schedule-next", "send-reminder"),
            extra_env={"DAPR_HTTP_PORT": port},
            in_process=True,
        )
        try:
            yield stack, sidecar
        finally:
            stack.stop()
            sidecar.stop()


def as_dapr_delivers(event: dict, topic: str) -> tuple[dict, bytes]:
    """A published CloudEvent as Dapr hands it to a subscriber: structured, with the
    pubsub and topic added to the attributes, id and source kept."""
    delivered = {**event, "pubsubname": "kafka-pubsub", "topic": topic, "traceid": "00-x"}
    return {"content-type": "application/cloudevents+json"}, json.dumps(delivered).encode()


def seed_completion(
    user: str, task: str, event_id: str, *, via_dapr: bool = True
) -> tuple[dict, bytes]:
    """The seed's completion as its backend publishes it: through Dapr (with the pubsub
    attributes Dapr adds on delivery) or, `via_dapr=False`, the same event posted plainly."""
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": "backend",
        "type": "com.dapr.event.sent",
        "datacontenttype": "application/json",
        "data": {
            "event_type": "task.completed",
            "task_id": task,
            "user_id": user,
            "payload": {
                "title": "Water the plants",
                "due_at": "2026-11-23T09:00:00Z",
                "completed_at": "2026-11-23T10:00:00Z",
                "recurring_pattern": "FREQ=DAILY",
            },
        },
    }
    if via_dapr:
        envelope.update(pubsubname="kafka-pubsub", topic="task-events")
    return {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode()


def test_a_recurring_completion_through_dapr_gets_its_next_occurrence(dapr):
    stack, sidecar = dapr
    side: Sidecar = sidecar.respond
    user = f"u-{uuid.uuid4().hex[:8]}"
    task = f"{user}.plants"
    answer = stack.post("complete-task", *seed_completion(user, task, f"{user}-done"))
    assert answer.status_code == 200 and answer.json() == {"status": "SUCCESS"}
    assert stack.store.get_task(user, task).status is TaskStatus.COMPLETED

    [(pubsub, topic, requested)] = [
        p for p in side.events("todo.occurrence.requested") if p[2]["data"]["task_id"] == task
    ]
    # The topic schedule-next subscribes to, on the configured pub/sub component.
    subscribed = stack.get("schedule-next", "/dapr/subscribe").json()
    assert (pubsub, topic) == (subscribed[0]["pubsubname"], subscribed[0]["topic"])
    assert (pubsub, topic) == ("kafka-pubsub", "task-events")

    # Dapr delivers it to every subscriber of the topic: complete-task ignores it,
    # schedule-next creates the next occurrence and publishes todo.task.scheduled.
    ignored = stack.post("complete-task", *as_dapr_delivers(requested, topic))
    assert ignored.json() == {"status": "SUCCESS"}
    created = stack.post("schedule-next", *as_dapr_delivers(requested, topic))
    assert created.json() == {"status": "SUCCESS"}
    nexts = [t for t in stack.store.list_tasks(user) if t.parent_task_id == task]
    assert [t.task_id for t in nexts] == [f"{task}@20261124T090000Z"]
    scheduled = [p for p in side.events("todo.task.scheduled") if p[2]["data"]["user_id"] == user]
    assert [(p[1], p[2]["data"]["task_id"]) for p in scheduled] == [
        ("task-events", f"{task}@20261124T090000Z")
    ]

    # Redelivered by Dapr: answered from the receipt, nothing published twice.
    again = stack.post("complete-task", *seed_completion(user, task, f"{user}-done"))
    assert again.json() == {"status": "SUCCESS"}
    assert (
        len(
            [p for p in side.events("todo.occurrence.requested") if p[2]["data"]["task_id"] == task]
        )
        == 1
    )


def test_a_sidecar_that_fails_or_is_gone_gets_retry_and_nothing_is_lost(dapr):
    stack, sidecar = dapr
    side: Sidecar = sidecar.respond
    user = f"u-{uuid.uuid4().hex[:8]}"
    task = f"{user}.bins"
    side.failing = 500
    try:
        failed = stack.post("complete-task", *seed_completion(user, task, f"{user}-done"))
        assert failed.status_code == 200 and failed.json() == {"status": "RETRY"}
        readiness = stack.get("complete-task", "/health/readiness", timeout=10)
        assert readiness.status_code == 200, "the sidecar answers its health endpoint"
    finally:
        side.failing = None
    # No receipt was kept for the failed delivery: Dapr's retry (once the breaker lets
    # one through) does the work again and publishes the event.
    wait_until(
        lambda: (
            stack.post("complete-task", *seed_completion(user, task, f"{user}-done")).json()
            == {"status": "SUCCESS"}
        ),
        20,
        "a retry to publish",
    )
    [published] = [
        p for p in side.events("todo.occurrence.requested") if p[2]["data"]["task_id"] == task
    ]
    assert stack.store.get_task(user, task).status is TaskStatus.COMPLETED
    assert published[2]["id"] and published[2]["source"] == "/nextup/complete-task"


def test_the_same_emitted_event_id_on_every_redelivery_until_one_is_published(
    tmp_path_factory, moto_server
):
    """The sidecar is down (nothing listens on its port): RETRY each time; the id the
    events would carry does not depend on which delivery finally publishes."""
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        stack = start_stack(
            "sqlite",
            tmp_path_factory,
            None,
            mp,
            names=("complete-task",),
            extra_env={"DAPR_HTTP_PORT": str(port)},
            in_process=True,
        )
    try:
        user = f"u-{uuid.uuid4().hex[:8]}"
        event = seed_completion(user, f"{user}.t", f"{user}-done")
        for _ in range(2):
            assert stack.post("complete-task", *event).json() == {"status": "RETRY"}
        ready = stack.get("complete-task", "/health/readiness", timeout=10)
        assert ready.status_code == 503
        assert "Dapr sidecar unreachable" in ready.json()["checks"]["dapr"]["error"]
        sidecar = HttpRecorder(respond=Sidecar()).start(port)
        try:
            wait_until(
                lambda: stack.post("complete-task", *event).json() == {"status": "SUCCESS"},
                20,
                "the sidecar back (the breaker lets a trial through)",
            )
            [(_, _, published)] = sidecar.respond.events("todo.occurrence.requested")
        finally:
            sidecar.stop()
        # The same event handled by a function with no sidecar, where the emitted event is
        # the reply: the same id, whichever delivery and whichever way it goes out.
        with pytest.MonkeyPatch.context() as mp:
            other = start_stack(
                "sqlite", tmp_path_factory, None, mp, names=("complete-task",), in_process=True
            )
        try:
            plain = seed_completion(user, f"{user}.t", f"{user}-done", via_dapr=False)
            reply = other.post("complete-task", *plain)
            assert reply.status_code == 200, reply.text
            assert reply.headers["ce-id"] == published["id"]
        finally:
            other.stop()
    finally:
        stack.stop()
