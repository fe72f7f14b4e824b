"""The broker's side, with recording HTTP servers standing in for the functions (`--route`):
the ingress and the records it writes, Trigger filters from `eventing/`, retries with
backoff, dead letters with Knative's error extensions, replies, and `nextup emit`."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest
from devstack import DevStack

from harness import (
    HttpRecorder,
    Recorded,
    cloud_event,
    recorder_fixture,
    structured_event,
    wait_until,
)
from nextup.events import CATALOG, DAPR_ENVELOPE, PING, SEED_TYPES
from nextup.functions import ALL
from nextup_dev.render.table import DEPLOYMENTS

FUNCTIONS = tuple(ALL)
PINGS = "/apis/v1/namespaces/nextup/pingsources/"


class Stand:
    """Answers as the tests want, by event id prefix: `flaky-` 503 twice then 202,
    `refuse-` 400, `reply-` 200 with a reply event; anything else 202."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.lock = threading.Lock()

    def __call__(self, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        event_id = request.headers.get("ce-id", "")
        with self.lock:
            self.attempts[event_id] += 1
            self.times[event_id].append(time.monotonic())
            attempt = self.attempts[event_id]
        json_type = {"content-type": "application/json"}
        if event_id.startswith("flaky-") and attempt <= 2:
            return 503, {**json_type, "retry-after": "1"}, b'{"error": "busy", "field": null}'
        if event_id.startswith("refuse-"):
            return 400, json_type, b'{"error": "refused by the test", "field": "data"}'
        if event_id.startswith("reply-") and request.path == "/complete-task/":
            reply = {
                "ce-specversion": "1.0",
                "ce-id": f"{event_id}-next",
                "ce-source": "/tests/stand",
                "ce-type": "todo.occurrence.requested",
                "ce-partitionkey": "replier",
                **json_type,
            }
            return 200, reply, b'{"from": "a reply"}'
        return 202, json_type, b'{"outcome": "recorded"}'


recorder = recorder_fixture(Stand)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, recorder: HttpRecorder) -> Iterator[DevStack]:
    routes = [arg for name in FUNCTIONS for arg in ("--route", f"{name}={recorder.url}/{name}/")]
    with DevStack(tmp_path_factory.mktemp("dev-delivery"), *routes) as stack:
        yield stack


def received(recorder: HttpRecorder, prefix: str) -> dict[str, list[Recorded]]:
    """Requests per stand-in function for events whose id starts with `prefix`."""
    by_function: dict[str, list[Recorded]] = defaultdict(list)
    for request in list(recorder.requests):
        if request.headers.get("ce-id", "").startswith(prefix):
            by_function[request.path.strip("/")].append(request)
    return by_function


def read_topic(bootstrap: str, topic: str) -> list:
    """Every record on `topic`, read without a consumer group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()  # fresh metadata
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            records = []

            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in partitions])

            while await behind():
                batch = await consumer.getmany(timeout_ms=200)
                for found in batch.values():
                    records.extend(found)
            return records
        finally:
            await consumer.stop()

    return asyncio.run(run())


def headers_of(record) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def record_with_id(dev: DevStack, event_id: str, topic: str = "knative-broker-nextup-nextup"):
    def find():
        for record in read_topic(dev.state()["kafka"], topic):
            if headers_of(record).get("ce_id") == event_id:
                return record
        return None

    return wait_until(find, 30, f"record {event_id} on {topic}")


# The ingress


def test_binary_mode_is_stored_in_the_kafka_binary_binding_keyed_by_partitionkey(dev):
    event_id = f"in-{uuid.uuid4().hex[:8]}"
    headers, body = cloud_event(
        "todo.task.deleted",
        {"user_id": "ann", "task_id": "t1"},
        id_=event_id,
        partitionkey="list-7",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    response = dev.post(headers, body)
    assert response.status_code == 202, response.text
    record = record_with_id(dev, event_id)
    assert record.key == b"list-7"
    stored = headers_of(record)
    assert stored["ce_specversion"] == "1.0"
    assert stored["ce_type"] == "todo.task.deleted"
    assert stored["ce_source"] == "/tests"
    assert stored["ce_traceparent"].startswith("00-0af7")
    assert stored["content-type"] == "application/json"
    assert json.loads(record.value) == {"user_id": "ann", "task_id": "t1"}


def test_structured_mode_on_the_root_path_is_stored_binary_keyed_by_the_user(dev):
    event_id = f"in-{uuid.uuid4().hex[:8]}"
    headers, body = structured_event(
        "todo.task.deleted", {"user_id": "bob", "task_id": "t2"}, id_=event_id
    )
    assert dev.post(headers, body, path="/").status_code == 202
    record = record_with_id(dev, event_id)
    assert record.key == b"bob"  # no partitionkey: the user's events share a partition
    stored = headers_of(record)
    assert stored["ce_id"] == event_id and stored["ce_type"] == "todo.task.deleted"
    assert json.loads(record.value) == {"user_id": "bob", "task_id": "t2"}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"content-type": "application/json"}, b'{"user_id": "ann"}'),
        ({"content-type": "text/plain"}, b"hello"),
        ({"content-type": "application/cloudevents+json"}, b"{not json"),
        (
            {"ce-specversion": "1.0", "ce-type": "t", "ce-source": "/s"},  # no id
            b"{}",
        ),
    ],
)
def test_what_is_not_a_cloudevent_gets_400(dev, headers, body):
    response = dev.post(headers, body)
    assert response.status_code == 400
    assert set(response.json()) == {"error", "field"}


def test_unknown_broker_health_and_status(dev):
    headers, body = cloud_event("todo.health.probe", {}, id_="nowhere")
    assert dev.post(headers, body, path="/other/broker").status_code == 404
    import httpx

    health = httpx.get(f"{dev.base}/healthz").json()
    assert health["status"] == "ready"
    assert set(health["parts"]) >= {"kafka", "ingress", "dispatcher", "functions", "mailbox"}
    assert set(dev.status()["triggers"]) == {
        "complete-task-task-completed",
        "complete-task-occurrence-skipped",
        "complete-task-dapr",
        "schedule-next-task-created",
        "schedule-next-task-updated",
        "schedule-next-task-deleted",
        "schedule-next-occurrence-requested",
        "schedule-next-reminder-snoozed",
        "schedule-next-dapr",
        "send-reminder-sweep",
        "send-reminder-reminder-due",
        "send-reminder-dapr",
        "health-probe",
        "health-canary",
    }


# Trigger filters, from the real manifests


def expected_functions(event_type: str, source: str) -> set[str]:
    """Who must get an event, from the function declarations, not from the manifests."""
    if event_type == PING:
        # Each PingSource drives one function; the Triggers tell them apart by source.
        return {
            PINGS + plan.tick.source: {name}
            for name, plan in DEPLOYMENTS.items()
            if plan.tick is not None and name in ALL
        }.get(source, set())
    if event_type == DAPR_ENVELOPE:
        # The seed's Dapr apps publish every type on one topic: every function that takes
        # the seed's shapes gets them all and acknowledges what is not its own.
        return {name for name, f in ALL.items() if set(f.consumes) & set(SEED_TYPES.values())}
    return {name for name, f in ALL.items() if event_type in f.consumes}


def test_every_event_type_reaches_exactly_the_functions_whose_triggers_match(dev, recorder):
    run = f"filt-{uuid.uuid4().hex[:6]}-"
    cases = [(t, "/tests") for t in CATALOG if t != PING]
    cases += [(PING, PINGS + name) for name in ("reminder-sweep", "health-canary", "other")]
    cases += [(DAPR_ENVELOPE, "backend"), ("todo.something.else", "/tests")]
    events = {}
    for n, (event_type, source) in enumerate(cases):
        event_id = f"{run}{n}"
        events[event_id] = (event_type, source)
        dev.post_many([cloud_event(event_type, {"user_id": "u"}, id_=event_id, source=source)])
    dev.wait_drained(60)

    got = {
        name: {r.headers["ce-id"] for r in requests}
        for name, requests in received(recorder, run).items()
    }
    for event_id, (event_type, source) in events.items():
        reached = {name for name, ids in got.items() if event_id in ids}
        assert reached == expected_functions(event_type, source), (event_type, source)
    # ...and the function declarations agree with what the Triggers deliver.
    for name, function in ALL.items():
        types = {events[i][0] for i in got.get(name, set())} - {DAPR_ENVELOPE}
        assert types == set(function.consumes), name
    # Each delivered once, in binary mode, asking for a reply.
    for requests in received(recorder, run).values():
        assert Counter(r.headers["ce-id"] for r in requests).most_common(1)[0][1] == 1
        assert all(
            r.headers["prefer"] == "reply" and "ce-specversion" in r.headers for r in requests
        )


# Delivery: retries, dead letters, replies


def test_a_503_is_retried_with_exponential_backoff_then_succeeds(dev, recorder):
    event_id = f"flaky-{uuid.uuid4().hex[:8]}"
    before = dev.status()["triggers"]["schedule-next-task-deleted"]
    dev.post(*cloud_event("todo.task.deleted", {"user_id": "u", "task_id": "t"}, id_=event_id))
    trigger = wait_until(
        lambda: (
            t
            if (t := dev.status()["triggers"]["schedule-next-task-deleted"])["delivered"]
            > before["delivered"]
            else None
        ),
        30,
        "delivery after retries",
    )
    assert trigger["retried"] - before["retried"] == 2
    attempts = received(recorder, event_id)["schedule-next"]
    assert len(attempts) == 3
    # eventing/base/triggers.yaml: exponential, backoffDelay PT0.5S: 0.5 s, then 1 s.
    times = recorder.respond.times[event_id]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.45 <= gaps[0] < 0.9, gaps
    assert 0.95 <= gaps[1] < 1.6, gaps
    assert dev.dead_letters() == [] or all(
        d["attributes"]["id"] != event_id for d in dev.dead_letters()
    )


def test_a_refused_event_is_dead_lettered_once_with_the_error_extensions(dev, recorder):
    event_id = f"refuse-{uuid.uuid4().hex[:8]}"
    data = {"user_id": "carol", "task_id": "t9"}
    dev.post(*cloud_event("todo.task.completed", data, id_=event_id))
    record = record_with_id(dev, event_id, topic="nextup-dead-letters")
    stored = headers_of(record)
    assert stored["ce_knativeerrordest"] == f"{recorder.url}/complete-task/"
    assert stored["ce_knativeerrorcode"] == "400"
    assert json.loads(base64.b64decode(stored["ce_knativeerrordata"])) == {
        "error": "refused by the test",
        "field": "data",
    }
    assert stored["ce_type"] == "todo.task.completed"
    assert json.loads(record.value) == data
    assert record.key == b"carol"
    assert len(received(recorder, event_id)["complete-task"]) == 1, "a 400 is not retried"
    [mirrored] = wait_until(
        lambda: [d for d in dev.dead_letters() if d["attributes"]["id"] == event_id],
        30,
        "the dead letter mirrored to a file",
    )
    assert mirrored["error"] == {
        "destination": f"{recorder.url}/complete-task/",
        "status": 400,
        "body": {"error": "refused by the test", "field": "data"},
    }


def test_a_reply_is_published_back_onto_the_broker(dev, recorder):
    event_id = f"reply-{uuid.uuid4().hex[:8]}"
    dev.post(*cloud_event("todo.task.completed", {"user_id": "dan", "task_id": "t"}, id_=event_id))
    [request] = wait_until(
        lambda: received(recorder, f"{event_id}-next").get("schedule-next"), 30, "the reply"
    )
    assert request.headers["ce-type"] == "todo.occurrence.requested"
    assert request.json() == {"from": "a reply"}
    assert record_with_id(dev, f"{event_id}-next").key == b"replier"


# nextup emit


EMIT = (sys.executable, "-m", "nextup.cli", "emit")


def emit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EMIT, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_emit_posts_a_binary_cloudevent_to_any_url_and_prints_the_answer(recorder):
    out = emit(
        "todo.health.probe",
        "--data",
        '{"sent_at": "2026-11-24T09:00:00Z"}',
        "--source",
        "/me",
        "--id",
        "emit-1",
        "--to",
        f"{recorder.url}/anywhere",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("202 Accepted  todo.health.probe id=emit-1")
    assert '{"outcome": "recorded"}' in out.stdout
    [request] = [r for r in recorder.requests if r.headers.get("ce-id") == "emit-1"]
    assert request.path == "/anywhere"
    assert request.headers["ce-source"] == "/me"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"sent_at": "2026-11-24T09:00:00Z"}


def test_emit_goes_to_the_running_dev_ingress_by_default(dev, recorder):
    event_id = f"emit-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [*EMIT, "todo.health.probe", "--data", "{}", "--id", event_id, "--structured"],
        capture_output=True,
        text=True,
        cwd=dev.workdir,  # where nextup dev keeps .nextup/dev.json
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"202 Accepted  todo.health.probe id={event_id} -> {dev.ingress}")
    wait_until(lambda: received(recorder, event_id).get("health"), 30, "delivery to health")


def test_emit_refuses_data_that_is_not_json_and_reports_a_refusal(recorder):
    assert emit("t", "--data", "{nope", "--to", recorder.url).returncode == 2
    out = emit("t", "--data", "{}", "--id", "refuse-emit", "--to", recorder.url + "/x")
    assert out.returncode == 1
    assert out.stdout.startswith("400 Bad Request")
