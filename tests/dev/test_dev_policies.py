"""Delivery policies from hand-written manifests: exhausted retries with linear backoff to a
URI dead-letter sink, attempt timeouts, no dead-letter sink (dropped), and ordered versus
unordered delivery."""

from __future__ import annotations

import base64
import itertools
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest
from devstack import DevStack, manifests, trigger

from harness import HttpRecorder, Recorded, cloud_event, recorder_fixture, wait_until


class Subscriber:
    """Answers per path: `/fail` 500 always, `/slow` after 1.5 s, `/ok` 202 after 50 ms,
    `/ok-too` after 300 ms; keeps when each request came and how many were in flight at
    once, per path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.in_flight: dict[str, int] = defaultdict(int)
        self.most: dict[str, int] = defaultdict(int)

    def __call__(self, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        path = request.path
        with self.lock:
            self.times[request.headers.get("ce-id", "")].append(time.monotonic())
            self.in_flight[path] += 1
            self.most[path] = max(self.most[path], self.in_flight[path])
        try:
            if path == "/fail":
                return 500, {"content-type": "text/plain"}, b"it broke"
            # /ok-too outlasts the time between two posts, so unordered delivery overlaps
            # however fast the pipeline passes each event on.
            time.sleep({"/slow": 1.5, "/ok-too": 0.3}.get(path, 0.05))
            return 202, {}, b""
        finally:
            with self.lock:
                self.in_flight[path] -= 1


recorder = recorder_fixture(Subscriber)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, recorder: HttpRecorder) -> Iterator[DevStack]:
    work = tmp_path_factory.mktemp("dev-policies")
    url = recorder.url
    eventing = manifests(
        work,
        trigger(
            "give-up",
            "test.fail",
            f"{url}/fail",
            retry=2,
            backoffPolicy="linear",
            backoffDelay="PT0.2S",
            deadLetterSink={"uri": f"{url}/dead"},
        ),
        trigger(
            "too-slow",
            "test.slow",
            f"{url}/slow",
            retry=1,
            backoffDelay="PT0.1S",
            timeout="PT0.3S",
            deadLetterSink={"uri": f"{url}/dead"},
        ),
        trigger("nowhere", "test.drop", f"{url}/fail"),
        trigger("in-order", "test.order", f"{url}/ok", ordered=True),
        trigger("any-order", "test.order", f"{url}/ok-too"),
    )
    stack = DevStack(work, "--concurrency", "8", eventing=eventing).start()
    try:
        yield stack
    finally:
        stack.stop()


def dead(recorder: HttpRecorder, event_id: str) -> list[Recorded]:
    return [
        r for r in recorder.requests if r.path == "/dead" and r.headers.get("ce-id") == event_id
    ]


def test_exhausted_retries_back_off_linearly_then_go_to_a_uri_dead_letter_sink(dev, recorder):
    dev.post(*cloud_event("test.fail", {"n": 1}, id_="gives-up"), path="/dev/local")
    [letter] = wait_until(lambda: dead(recorder, "gives-up"), 30, "the dead letter")
    assert letter.headers["ce-knativeerrorcode"] == "500"
    assert letter.headers["ce-knativeerrordest"] == f"{recorder.url}/fail"
    assert base64.b64decode(letter.headers["ce-knativeerrordata"]) == b"it broke"
    assert letter.json() == {"n": 1}
    attempts = recorder.respond.times["gives-up"][:3]  # then the dead letter itself
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert 0.18 <= gaps[0] < 0.5 and 0.38 <= gaps[1] < 0.8, gaps  # 0.2 s, then 0.4 s

    def counted() -> bool:
        trigger = dev.status()["triggers"]["give-up"]
        return (trigger["retried"], trigger["dead_lettered"]) == (2, 1)

    # The counts reach /status a moment after the dead letter reached its sink.
    wait_until(counted, 10, "/status to count two retries and one dead letter")


def test_an_attempt_that_outlives_its_timeout_is_retried_then_dead_lettered_without_a_code(
    dev, recorder
):
    dev.post(*cloud_event("test.slow", {}, id_="too-slow-1"), path="/dev/local")
    [letter] = wait_until(lambda: dead(recorder, "too-slow-1"), 30, "the dead letter")
    assert letter.headers["ce-knativeerrordest"] == f"{recorder.url}/slow"
    assert "ce-knativeerrorcode" not in letter.headers  # nothing answered in time


def test_without_a_dead_letter_sink_a_failed_event_is_dropped(dev, recorder):
    dev.post(*cloud_event("test.drop", {}, id_="dropped-1"), path="/dev/local")
    wait_until(lambda: dev.status()["triggers"]["nowhere"]["dropped"] == 1, 30, "the drop")
    assert len(recorder.respond.times["dropped-1"]) == 1, "no delivery spec: no retries"
    assert "dropped" in dev.log()


def test_ordered_delivers_one_at_a_time_per_partition_unordered_in_parallel(dev, recorder):
    # One partition key: all of them land on one partition.
    events = [
        cloud_event("test.order", {"n": n}, id_=f"order-{n}", partitionkey="same")
        for n in range(24)
    ]
    for headers, body in events:  # one by one: their order on the partition is known
        assert dev.post(headers, body, path="/dev/local").status_code == 202
    wait_until(
        lambda: all(
            dev.status()["triggers"][t]["delivered"] == 24 for t in ("in-order", "any-order")
        ),
        60,
        "both triggers to deliver everything",
    )
    subscriber = recorder.respond
    assert subscriber.most["/ok"] == 1
    assert subscriber.most["/ok-too"] > 1
    arrivals = [r.headers["ce-id"] for r in recorder.requests if r.path == "/ok"]
    assert arrivals == [f"order-{n}" for n in range(24)]


def test_with_kafka_gone_the_ingress_answers_503_and_healthz_says_so(dev):
    # Last in this module: it takes the stack's Kafka away.
    import httpx

    os.kill(dev.state()["pids"]["kafka"], signal.SIGKILL)
    wait_until(lambda: httpx.get(f"{dev.base}/healthz").status_code == 503, 30, "healthz to notice")
    assert httpx.get(f"{dev.base}/healthz").json()["parts"]["kafka"] is False
    response = dev.post(*cloud_event("test.order", {}, id_="no-kafka"), path="/dev/local")
    assert response.status_code == 503
    assert "Kafka" in response.json()["error"]
    assert "kafka exited" in dev.log()
