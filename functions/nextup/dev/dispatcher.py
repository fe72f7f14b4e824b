"""The Kafka Broker's dispatcher: one consumer group per Trigger, reading the broker topic.

For each record: apply the Trigger's filter; deliver what matches by HTTP POST in binary
mode with `Prefer: reply`; retry per the Trigger's `delivery`; publish a reply event back
onto the broker topic; send what failed for good to the dead-letter sink with Knative's
error extensions. An offset is committed only once its event (and every one before it in
the partition) reached such a final outcome, so a crash loses nothing: what was in flight
is delivered again, and the functions deduplicate on `source` + `id`.

`delivery.order: ordered` delivers one event at a time per partition; unordered delivery
runs up to `concurrency` events at once per Trigger. A partition whose queue is full is
paused, so polling (and group membership) goes on while a delivery waits out its backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from nextup.dev import binding
from nextup.dev.delivery import (
    attempt_timeout,
    backoff,
    error_extensions,
    retryable,
    succeeded,
)
from nextup.dev.kafka import CONSUMER_SETTINGS
from nextup.dev.manifests import Destination, Eventing, Trigger
from nextup.dev.offsets import PartitionOffsets
from nextup.dev.status import Flow
from nextup.envelope import parse_http
from nextup.errors import EventError

Report = Callable[[Flow], None]
DEFAULT_CONCURRENCY = 16
HIGH_WATER = 64  # records queued for one lane before its partitions are paused
COMMIT_EVERY = 0.2  # seconds between commits while events keep finishing
STOP_GRACE = 3.0  # seconds in-flight deliveries get to finish when stopping


class Stopping(Exception):
    """The dispatcher is stopping mid-delivery: the event stays uncommitted."""


class Resolver:
    """Where a Destination is: a Knative Service by name (a local function or a stand-in
    given with `--route`), or its URI as written."""

    def __init__(self, routes: dict[str, str]) -> None:
        self.routes = routes

    def url(self, destination: Destination) -> str:
        if destination.uri:
            return destination.uri
        assert destination.ref is not None
        url = self.routes.get(destination.ref.name)
        if url is None:
            raise LookupError(f"no address for {destination.describe()}: not started, no --route")
        return url


@dataclass
class Answer:
    """One delivery attempt: the status (None when nothing answered) and what came back."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    error: str | None
    ms: float


class Producer:
    """Produces records, retrying while Kafka is away: a reply or dead letter that could not
    be written keeps its event uncommitted, so it is never lost."""

    def __init__(self, producer: AIOKafkaProducer, stopping: asyncio.Event) -> None:
        self.producer = producer
        self.stopping = stopping

    async def send(self, topic: str, record: binding.Record) -> None:
        delay = 0.1
        while True:
            try:
                await self.producer.send_and_wait(
                    topic, record.value, key=record.key, headers=record.headers
                )
                return
            except KafkaError:
                if self.stopping.is_set():
                    raise Stopping from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class Lane:
    """A queue of records and the workers draining it: one worker per partition when
    ordered, `concurrency` workers shared by all partitions when unordered."""

    def __init__(self, workers: int, work: Callable[[Any], Any]) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.tasks = [asyncio.create_task(self._drain(work)) for _ in range(workers)]

    async def _drain(self, work: Callable[[Any], Any]) -> None:
        while True:
            item = await self.queue.get()
            try:
                await work(item)
            finally:
                self.queue.task_done()

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, dispatcher: TriggerDispatcher) -> None:
        self.dispatcher = dispatcher

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.dispatcher.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.dispatcher.assigned(set(assigned))


class TriggerDispatcher:
    def __init__(
        self,
        trigger: Trigger,
        *,
        topic: str,
        bootstrap: str,
        subscriber: str,
        dead_letter: tuple[str, str] | None,
        producer: Producer,
        client: httpx.AsyncClient,
        report: Report,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.trigger = trigger
        self.topic = topic
        self.bootstrap = bootstrap
        self.subscriber = subscriber
        # ("topic", name) for a KafkaSink, ("uri", url) for an HTTP dead-letter sink.
        self.dead_letter = dead_letter
        self.producer = producer
        self.client = client
        self.report = report
        self.concurrency = concurrency
        self.offsets: dict[TopicPartition, PartitionOffsets] = {}
        self.generation: dict[TopicPartition, int] = {}
        self.lanes: dict[TopicPartition | None, Lane] = {}
        self.paused: set[TopicPartition] = set()
        # Committed position per partition: their sum is how many records of the topic this
        # Trigger has finished with, which tells when everything sent has been dispatched.
        self.positions: dict[TopicPartition, int] = {}
        self._reported = -1
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None

    # The consumer loop

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.trigger.consumer_group,
            **CONSUMER_SETTINGS,
        )
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        self.consumer = consumer
        await consumer.start()
        last_commit = 0.0
        try:
            while not self.stopping.is_set():
                batch = await consumer.getmany(timeout_ms=100, max_records=500)
                if consumer.assignment():
                    self.ready.set()
                for tp, records in batch.items():
                    for record in records:
                        self._accept(tp, record)
                self._flow_control()
                if time.monotonic() - last_commit >= COMMIT_EVERY:
                    await self.commit()
                    last_commit = time.monotonic()
        finally:
            await self._shutdown()

    def _accept(self, tp: TopicPartition, record: Any) -> None:
        offsets = self.offsets.setdefault(tp, PartitionOffsets())
        try:
            offsets.started(record.offset)
        except ValueError:
            # The client went back (an offset reset): count afresh from here; what was in
            # flight finishes or is delivered again, either way nothing is skipped.
            offsets = self.offsets[tp] = PartitionOffsets()
            offsets.started(record.offset)
        attributes = binding.attributes(record.headers)
        if not self.trigger.filter(attributes):
            offsets.finished(record.offset)
            return
        lane = self._lane(tp)
        lane.queue.put_nowait((tp, self.generation.get(tp, 0), record, attributes))

    def _lane(self, tp: TopicPartition) -> Lane:
        key = tp if self.trigger.ordered else None
        lane = self.lanes.get(key)
        if lane is None:
            workers = 1 if self.trigger.ordered else self.concurrency
            lane = self.lanes[key] = Lane(workers, self._work)
        return lane

    def _flow_control(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        assignment = consumer.assignment()
        for tp in assignment:
            lane = self.lanes.get(tp if self.trigger.ordered else None)
            queued = lane.queue.qsize() if lane else 0
            if tp not in self.paused and queued >= HIGH_WATER:
                consumer.pause(tp)
                self.paused.add(tp)
            elif tp in self.paused and queued < HIGH_WATER // 2:
                consumer.resume(tp)
                self.paused.discard(tp)

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        positions = {}
        for tp, offsets in self.offsets.items():
            if only is not None and tp not in only:
                continue
            position = offsets.committable()
            if position is not None:
                positions[tp] = position
        if not positions:
            return
        try:
            await consumer.commit(positions)
        except KafkaError as exc:
            # Not committed means delivered again later: safe, only slower.
            self.report(Flow("error", self.trigger.name, detail=f"commit failed: {exc!r}"))
            return
        for tp, position in positions.items():
            if tp in self.offsets:
                self.offsets[tp].committed(position)
            self.positions[tp] = position
        self._report_progress()

    def _report_progress(self) -> None:
        total = sum(self.positions.values())
        if total != self._reported:
            self._reported = total
            self.report(Flow("committed", self.trigger.name, status=total))

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        await self.commit(only=revoked)
        for tp in revoked:
            # Work still queued for these partitions belongs to their next owner now.
            self.generation[tp] = self.generation.get(tp, 0) + 1
            self.offsets.pop(tp, None)
            self.paused.discard(tp)

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        assert self.consumer is not None
        for tp in assigned:
            self.generation.setdefault(tp, 0)
            self.offsets.pop(tp, None)
            with contextlib.suppress(KafkaError):
                self.positions[tp] = await self.consumer.committed(tp) or 0
        self._report_progress()

    async def _shutdown(self) -> None:
        pending = [lane.queue.join() for lane in self.lanes.values()]
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending), STOP_GRACE)
        for lane in self.lanes.values():
            lane.cancel()
        await asyncio.gather(
            *(t for lane in self.lanes.values() for t in lane.tasks), return_exceptions=True
        )
        with contextlib.suppress(KafkaError):
            await self.commit()
        if self.consumer is not None:
            await self.consumer.stop()

    def stop(self) -> None:
        self.stopping.set()

    # One event

    async def _work(self, item: tuple[TopicPartition, int, Any, dict[str, str]]) -> None:
        tp, generation, record, attributes = item
        if self.generation.get(tp, 0) != generation:
            return  # the partition moved to another member; it delivers this event
        try:
            await self.deliver(record, attributes)
        except Stopping:
            return  # not final: stays uncommitted and is delivered again after a restart
        except Exception as exc:
            # A bug of ours: say so loudly; the offset stays uncommitted rather than lost.
            self.report(Flow("error", self.trigger.name, detail=f"dispatch failed: {exc!r}"))
            return
        offsets = self.offsets.get(tp)
        if offsets is not None and self.generation.get(tp, 0) == generation:
            offsets.finished(record.offset)

    async def deliver(self, record: Any, attributes: dict[str, str]) -> None:
        """Deliver one event to its final outcome: delivered, dead-lettered or dropped."""
        trigger, delivery = self.trigger, self.trigger.delivery
        event_type, event_id = attributes.get("type"), attributes.get("id")
        self.report(Flow("matched", trigger.name, event_type, event_id))
        headers = binding.http_headers(record.headers)
        headers["prefer"] = "reply"
        retries = 0
        while True:
            answer = await self._attempt(headers, record.value, attempt_timeout(delivery))
            if answer.status is not None and succeeded(answer.status):
                problem = await self._reply(answer)
                if problem is None:
                    self.report(
                        Flow(
                            "delivered",
                            trigger.name,
                            event_type,
                            event_id,
                            answer.status,
                            ms=answer.ms,
                        )
                    )
                    return
                answer = Answer(answer.status, answer.headers, answer.body, problem, answer.ms)
                break
            if retryable(answer.status) and retries < delivery.retry:
                retries += 1
                wait = backoff(delivery, retries).total_seconds()
                detail = f"{answer.error or ''} retry {retries}/{delivery.retry} in {wait:g} s"
                self.report(
                    Flow(
                        "retried", trigger.name, event_type, event_id, answer.status, detail.strip()
                    )
                )
                if await self._wait_or_stop(wait):
                    raise Stopping
                continue
            break
        await self._fail(record, answer, event_type, event_id)

    async def _attempt(self, headers: dict[str, str], body: bytes, timeout: float) -> Answer:
        started = time.perf_counter()
        try:
            response = await self.client.post(
                self.subscriber, headers=headers, content=body, timeout=timeout
            )
        except httpx.TimeoutException:
            return Answer(None, {}, b"", f"no answer within {timeout:g} s", _ms(started))
        except httpx.TransportError as exc:
            return Answer(None, {}, b"", f"unreachable: {type(exc).__name__}", _ms(started))
        return Answer(
            response.status_code, dict(response.headers), response.content, None, _ms(started)
        )

    async def _reply(self, answer: Answer) -> str | None:
        """Publish the reply event, if the answer carries one; a problem if it is not valid."""
        lowered = {k.lower(): v for k, v in answer.headers.items()}
        media = lowered.get("content-type", "").split(";", 1)[0].strip().lower()
        if "ce-specversion" not in lowered and media != "application/cloudevents+json":
            return None  # a plain body (e.g. a 202's JSON) is not a reply
        try:
            event = parse_http(lowered, answer.body)
        except EventError as exc:
            return f"reply is not a valid CloudEvent: {exc.error}"
        record = binding.record_from_event(event)
        await self.producer.send(self.topic, record)
        self.report(Flow("reply", self.trigger.name, event["type"], event["id"]))
        return None

    async def _fail(self, record: Any, answer: Answer, event_type, event_id) -> None:
        name = self.trigger.name
        reason = answer.error or _snippet(answer.body)
        if self.dead_letter is None:
            self.report(Flow("dropped", name, event_type, event_id, answer.status, reason))
            return
        extensions = error_extensions(self.subscriber, answer.status, answer.body)
        headers = binding.with_extensions(record.headers, extensions)
        kind, target = self.dead_letter
        if kind == "topic":
            await self.producer.send(target, binding.Record(record.key, record.value, headers))
        else:
            await self._post_dead_letter(target, headers, record.value)
        self.report(
            Flow("dead", name, event_type, event_id, answer.status, f"{reason} -> {target}")
        )

    async def _post_dead_letter(self, url: str, headers: binding.Headers, body: bytes) -> None:
        delay = 0.2
        while True:
            try:
                response = await self.client.post(
                    url, headers=binding.http_headers(headers), content=body, timeout=30.0
                )
                if succeeded(response.status_code) or not retryable(response.status_code):
                    return
            except httpx.TransportError:
                pass
            if await self._wait_or_stop(delay):
                raise Stopping
            delay = min(delay * 2, 5.0)

    async def _wait_or_stop(self, seconds: float) -> bool:
        """Wait out a backoff; True when the dispatcher is stopping meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()


def _snippet(body: bytes, limit: int = 160) -> str:
    """The start of an answer's body, on one line, for the terminal."""
    text = " ".join(body[:limit].decode(errors="replace").split())
    return text + ("..." if len(body) > limit else "")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def dead_letter_target(eventing: Eventing, trigger: Trigger) -> tuple[str, str] | None:
    sink = trigger.delivery.dead_letter
    if sink is None:
        return None
    if sink.ref is not None:
        return ("topic", eventing.kafka_sink(sink.ref).topic)
    assert sink.uri is not None
    return ("uri", sink.uri)


async def run_dispatchers(
    eventing: Eventing,
    bootstrap: str,
    routes: dict[str, str],
    report: Report,
    stop: asyncio.Event,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> None:
    """Every Trigger's dispatcher, until `stop` is set; reports `ready` once all of them
    have joined their consumer groups."""
    from nextup.dev.kafka import PRODUCER_SETTINGS

    resolver = Resolver(routes)
    kafka_producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_SETTINGS)
    await kafka_producer.start()
    producer = Producer(kafka_producer, stop)
    async with contextlib.AsyncExitStack() as clients:
        dispatchers = []
        for trigger in eventing.triggers:
            broker = eventing.broker(trigger.namespace, trigger.broker)
            # One small pool per Trigger: httpcore scans its whole pool on every request.
            width = broker.partitions if trigger.ordered else concurrency
            limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
            client = await clients.enter_async_context(httpx.AsyncClient(limits=limits))
            dispatchers.append(
                TriggerDispatcher(
                    trigger,
                    topic=broker.topic,
                    bootstrap=bootstrap,
                    subscriber=resolver.url(trigger.subscriber),
                    dead_letter=dead_letter_target(eventing, trigger),
                    producer=producer,
                    client=client,
                    report=report,
                    concurrency=concurrency,
                )
            )
        tasks = [asyncio.create_task(d.run(), name=d.trigger.name) for d in dispatchers]

        async def announce() -> None:
            await asyncio.gather(*(d.ready.wait() for d in dispatchers))
            report(Flow("ready", detail=f"{len(dispatchers)} triggers"))

        announcer = asyncio.create_task(announce())
        stopped = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for dispatcher in dispatchers:
                dispatcher.stop()
            announcer.cancel()
            stopped.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await kafka_producer.stop()


def serve(eventing_dir: str, bootstrap: str, routes: dict[str, str], concurrency: int) -> int:
    """The dispatcher as its own process (`nextup dev-dispatcher`): Flow lines on stdout,
    stops on SIGTERM or SIGINT, and when the `nextup dev` that started it is gone."""
    import os
    import signal
    from pathlib import Path

    from nextup.dev.manifests import load

    eventing = load(Path(eventing_dir))

    def report(flow: Flow) -> None:
        print(flow.encode(), flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        parent = os.getppid()

        async def orphaned() -> None:
            while os.getppid() == parent:
                await asyncio.sleep(1.0)
            stop.set()

        watcher = asyncio.create_task(orphaned())
        try:
            await run_dispatchers(eventing, bootstrap, routes, report, stop, concurrency)
        finally:
            watcher.cancel()

    asyncio.run(main())
    return 0
