"""The Kafka Broker's dispatcher: every Trigger of `eventing/`, each its own consumer group.

The broker topic is read once and each record offered to every Trigger (`fanout`); each
Trigger keeps its own place per partition and commits it in its own consumer group,
`knative-trigger-<namespace>-<name>` (`groupoffsets`). For each record a Trigger applies
its filter; delivers what matches by HTTP POST in binary mode with `Prefer: reply`;
retries per its `delivery`; publishes a reply event back onto the broker topic; sends what
failed for good to the dead-letter sink with Knative's error extensions. An offset is
committed only once its event (and every one before it in the partition) reached such a
final outcome, so a crash loses nothing: what was in flight is delivered again, from each
Trigger's own committed offset, and the functions deduplicate on `source` + `id`.

`delivery.order: ordered` delivers one event at a time per partition; unordered delivery
runs up to `concurrency` events at once per Trigger. A Trigger whose queue is full reads
on with its own consumer at its own pace, so it neither holds the others up nor fills
memory while a delivery waits out its backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from nextup.envelope import parse_http
from nextup.errors import EventError
from nextup_dev import binding
from nextup_dev.console.attempts import AttemptLog
from nextup_dev.delivery import (
    attempt_timeout,
    backoff,
    error_extensions,
    retryable,
    succeeded,
)
from nextup_dev.fanout import CatchUp, TopicReader
from nextup_dev.groupoffsets import GroupOffsets
from nextup_dev.httpclient import BadRequest, HttpClient, HttpError, Timeout
from nextup_dev.kafka import PRODUCER_SETTINGS
from nextup_dev.manifests import Destination, Eventing, Trigger
from nextup_dev.offsets import PartitionOffsets
from nextup_dev.status import Flow, Sampler, Tally, describe

DEFAULT_CONCURRENCY = 16
# Records queued for one lane before its Trigger reads that partition on its own: a few
# seconds of work at full speed, so the shared stream is left only by a Trigger that lags.
HIGH_WATER = 2000
COMMIT_EVERY = 0.2  # seconds between commits while events keep finishing
TALLY_EVERY = 0.25  # seconds between count reports to `nextup dev`
FREQUENT = frozenset({"matched", "delivered", "replies"})  # counted, reported per interval
STOP_GRACE = 3.0  # seconds in-flight deliveries get to finish when stopping


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the dispatcher on uvloop when it is installed (the `local` extra has it): its
    sockets and timers cost about half of asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


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
    """One delivery attempt: the status (None when nothing answered) and what came back;
    `final` when trying again could not change the outcome."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    error: str | None
    ms: float
    final: bool = False


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


@dataclass
class Place:
    """Where a Trigger is in one partition."""

    offsets: PartitionOffsets
    next: int  # the next offset this Trigger takes; anything below it is done or in hand
    committed: int  # its committed position (where it started, when it never committed)
    lagging: bool = False  # read by its own CatchUp reader, not from the shared stream


class TriggerDispatcher:
    def __init__(
        self,
        trigger: Trigger,
        *,
        topic: str,
        subscriber: str,
        dead_letter: tuple[str, str] | None,
        producer: Producer,
        client: HttpClient,
        offsets: GroupOffsets,
        report: Reporter,
        catch_up: Callable[[TriggerDispatcher], CatchUp],
        concurrency: int = DEFAULT_CONCURRENCY,
        high_water: int = HIGH_WATER,
    ) -> None:
        self.trigger = trigger
        self.topic = topic
        self.subscriber = subscriber
        # ("topic", name) for a KafkaSink, ("uri", url) for an HTTP dead-letter sink.
        self.dead_letter = dead_letter
        self.producer = producer
        self.client = client
        self.group_offsets = offsets
        self.report = report
        self._catch_up_factory = catch_up
        self._catch_up: CatchUp | None = None
        self.concurrency = concurrency
        self.high_water = high_water
        self.places: dict[TopicPartition, Place] = {}
        self.lanes: dict[TopicPartition | None, Lane] = {}
        self.stopping = asyncio.Event()
        self._filter = trigger.filter
        self._name = trigger.name

    @property
    def group(self) -> str:
        return self.trigger.consumer_group

    # Records in, from the shared reader or this Trigger's own

    def start_at(self, tp: TopicPartition, offset: int, committed: int) -> None:
        self.places[tp] = Place(PartitionOffsets(), offset, committed)
        self.report.level(self._name, self.committed_total())

    def offer(self, tp: TopicPartition, record: Any, attributes: dict[str, str]) -> None:
        """A record from the shared reader: taken unless already had, or lagging."""
        place = self.places[tp]
        if record.offset < place.next or place.lagging:
            return
        self.take(tp, record, attributes)

    def take(self, tp: TopicPartition, record: Any, attributes: dict[str, str]) -> None:
        place = self.places[tp]
        place.next = record.offset + 1
        if not self._filter(attributes):
            place.offsets.passed(record.offset)
            return
        place.offsets.started(record.offset)
        self.report.count(self._name, "matched")
        lane = self._lane(tp)
        lane.queue.put_nowait((tp, record, attributes))
        if lane.queue.qsize() >= self.high_water and not place.lagging:
            # Hold no more of it in memory, and hold no other Trigger up: read it ourselves.
            place.lagging = True
            if self._catch_up is None:
                self._catch_up = self._catch_up_factory(self)
            self._catch_up.add(tp)
            self.report.show(
                Flow("lagging", self._name, detail=f"reads partition {tp.partition} on its own")
            )

    def next_offset(self, tp: TopicPartition) -> int:
        return self.places[tp].next

    def has_room(self, tp: TopicPartition) -> bool:
        lane = self.lanes.get(tp if self.trigger.ordered else None)
        return lane is None or lane.queue.qsize() < max(1, self.high_water // 2)

    def rejoin(self, tp: TopicPartition) -> None:
        self.places[tp].lagging = False
        self.report.show(
            Flow("caught-up", self._name, detail=f"partition {tp.partition} read in common again")
        )

    def _lane(self, tp: TopicPartition) -> Lane:
        key = tp if self.trigger.ordered else None
        lane = self.lanes.get(key)
        if lane is None:
            workers = 1 if self.trigger.ordered else self.concurrency
            lane = self.lanes[key] = Lane(workers, self._work)
        return lane

    # Commits

    def committed_total(self) -> int:
        """Records of the topic this Trigger is done with: when it equals the records on
        the topic, everything sent has been dispatched."""
        return sum(place.committed for place in self.places.values())

    async def commit(self) -> None:
        positions = {}
        for tp, place in self.places.items():
            position = place.offsets.committable()
            if position is not None:
                positions[tp] = position
        if not positions:
            return
        try:
            await self.group_offsets.commit(self.group, positions)
        except KafkaError as exc:
            # Not committed means delivered again later: safe, only slower.
            self.report.show(Flow("error", self._name, detail=f"commit failed: {exc!r}"))
            return
        for tp, position in positions.items():
            place = self.places[tp]
            place.offsets.committed(position)
            place.committed = position
        self.report.level(self._name, self.committed_total())

    async def shutdown(self) -> None:
        """Let what is in flight finish (for a while), then commit what reached its end."""
        self.stopping.set()
        if self._catch_up is not None:
            await self._catch_up.stop()
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

    # One event

    async def _work(self, item: tuple[TopicPartition, Any, dict[str, str]]) -> None:
        tp, record, attributes = item
        try:
            await self.deliver(record, attributes)
        except Stopping:
            return  # not final: stays uncommitted and is delivered again after a restart
        except Exception as exc:
            # A bug of ours: say so loudly; the offset stays uncommitted rather than lost.
            self.report.show(Flow("error", self._name, detail=f"dispatch failed: {exc!r}"))
            return
        self.places[tp].offsets.finished(record.offset)

    async def deliver(self, record: Any, attributes: dict[str, str]) -> None:
        """Deliver one event to its final outcome: delivered, dead-lettered or dropped."""
        trigger, delivery = self.trigger, self.trigger.delivery
        event_type, event_id = attributes.get("type"), attributes.get("id")
        headers = binding.http_headers(record.headers)
        headers["prefer"] = "reply"
        retries = 0
        attempts = self.report.attempts  # the console's ring: one append per attempt
        while True:
            answer = await self._attempt(headers, record.value, attempt_timeout(delivery))
            if answer.status is not None and succeeded(answer.status):
                problem, reply = await self._reply(answer)
                if problem is None:
                    if attempts is not None:
                        attempts.add(
                            self._name, attributes, retries + 1, answer, "delivered", reply=reply
                        )
                    self.report.count(self._name, "delivered")
                    if self.report.sample():
                        self.report.show(
                            Flow(
                                "delivered",
                                self._name,
                                event_type,
                                event_id,
                                answer.status,
                                ms=answer.ms,
                            )
                        )
                    return
                answer = Answer(answer.status, answer.headers, answer.body, problem, answer.ms)
                break
            if answer.final:
                break
            if retryable(answer.status) and retries < delivery.retry:
                retries += 1
                wait = backoff(delivery, retries).total_seconds()
                if attempts is not None:
                    attempts.add(self._name, attributes, retries, answer, "retry", wait)
                detail = f"{answer.error or ''} retry {retries}/{delivery.retry} in {wait:g} s"
                self.report.count(self._name, "retried")
                self.report.show(
                    Flow(
                        "retried", trigger.name, event_type, event_id, answer.status, detail.strip()
                    )
                )
                if await self._wait_or_stop(wait):
                    raise Stopping
                continue
            break
        outcome = await self._fail(record, answer, event_type, event_id)
        if attempts is not None:
            attempts.add(self._name, attributes, retries + 1, answer, outcome)

    async def _attempt(self, headers: dict[str, str], body: bytes, timeout: float) -> Answer:
        started = time.perf_counter()
        try:
            response = await self.client.post(self.subscriber, headers, body, timeout)
        except Timeout:
            return Answer(None, {}, b"", f"no answer within {timeout:g} s", _ms(started))
        except BadRequest as exc:
            # Sending it again would not change it: straight to the dead-letter sink.
            return Answer(None, {}, b"", f"cannot send: {exc}", _ms(started), final=True)
        except HttpError as exc:
            return Answer(None, {}, b"", f"unreachable: {exc}", _ms(started))
        return Answer(response.status, response.headers, response.body, None, _ms(started))

    async def _reply(self, answer: Answer) -> tuple[str | None, bool]:
        """Publish the reply event, if the answer carries one: (a problem if it is not
        valid, whether one was published)."""
        headers = answer.headers  # names lower-cased by the client
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if "ce-specversion" not in headers and media != "application/cloudevents+json":
            return None, False  # a plain body (e.g. a 202's JSON) is not a reply
        try:
            event = parse_http(headers, answer.body)
        except EventError as exc:
            return f"reply is not a valid CloudEvent: {exc.error}", False
        record = binding.record_from_event(event)
        await self.producer.send(self.topic, record)
        self.report.count(self._name, "replies")
        if self.report.sample():
            self.report.show(Flow("reply", self._name, event["type"], event["id"]))
        return None, True

    async def _fail(self, record: Any, answer: Answer, event_type, event_id) -> str:
        """Dead-letter or drop the event; which of the two."""
        name = self._name
        reason = answer.error or _snippet(answer.body)
        if self.dead_letter is None:
            self.report.count(name, "dropped")
            self.report.show(Flow("dropped", name, event_type, event_id, answer.status, reason))
            return "dropped"
        extensions = error_extensions(self.subscriber, answer.status, answer.body)
        headers = binding.with_extensions(record.headers, extensions)
        kind, target = self.dead_letter
        if kind == "topic":
            await self.producer.send(target, binding.Record(record.key, record.value, headers))
        else:
            await self._post_dead_letter(target, headers, record.value)
        self.report.count(name, "dead_lettered")
        self.report.show(
            Flow(
                "dead-lettered",
                name,
                event_type,
                event_id,
                answer.status,
                f"{reason} -> {target}",
            )
        )
        return "dead-lettered"

    async def _post_dead_letter(self, url: str, headers: binding.Headers, body: bytes) -> None:
        delay = 0.2
        while True:
            try:
                response = await self.client.post(url, binding.http_headers(headers), body, 30.0)
                if succeeded(response.status) or not retryable(response.status):
                    return
            except BadRequest:
                return  # cannot be sent to this sink, ever
            except HttpError:
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


class Reporter:
    """How the dispatcher tells `nextup dev` what happens: counts per Trigger and committed
    levels, written as one `Tally` line per interval; `show` for lines a person should see,
    `sample` to let only a few of the chatty ones through."""

    def __init__(
        self,
        write: Callable[[str], None],
        flush_every: float = TALLY_EVERY,
        log: Callable[[str], None] | None = None,
        attempts: AttemptLog | None = None,
    ) -> None:
        self.write = write
        self.attempts = attempts
        self.log = log  # a person's line for each Flow shown: the dispatcher's own log
        self.tally = Tally()
        self.sampler = Sampler()
        self.flush_every = flush_every

    def count(self, trigger: str, kind: str) -> None:
        self.tally.add(trigger, kind)
        if kind not in FREQUENT:
            self.flush()  # a retry or a dead letter is news: no need to wait for the interval

    def level(self, trigger: str, committed: int) -> None:
        self.tally.level(trigger, committed)

    def show(self, flow: Flow) -> None:
        self.write(flow.encode())
        if self.log is not None:
            self.log(describe(flow))

    def sample(self) -> bool:
        return self.sampler.allow()

    def flush(self) -> None:
        self.tally.hidden += self.sampler.take_hidden()
        line = self.tally.flush()
        if line is not None:
            self.write(line)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.flush_every)
            self.flush()


async def run_dispatchers(
    eventing: Eventing,
    bootstrap: str,
    routes: dict[str, str],
    report: Reporter,
    stop: asyncio.Event,
    concurrency: int = DEFAULT_CONCURRENCY,
    high_water: int = HIGH_WATER,
) -> None:
    """Every Trigger's dispatcher, until `stop` is set; reports `ready` once the broker
    topics are assigned and every Trigger knows where it resumes."""
    from aiokafka.client import AIOKafkaClient

    resolver = Resolver(routes)
    kafka_producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_SETTINGS)
    await kafka_producer.start()
    kafka_client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await kafka_client.bootstrap()
    offsets = GroupOffsets(kafka_client)
    producer = Producer(kafka_producer, stop)
    client = HttpClient()
    reader: TopicReader | None = None
    dispatchers: list[TriggerDispatcher] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        followers: dict[str, list[Any]] = {}
        for trigger in eventing.triggers:
            topic = eventing.broker(trigger.namespace, trigger.broker).topic
            dispatcher = TriggerDispatcher(
                trigger,
                topic=topic,
                subscriber=resolver.url(trigger.subscriber),
                dead_letter=dead_letter_target(eventing, trigger),
                producer=producer,
                client=client,
                offsets=offsets,
                report=report,
                catch_up=lambda d: CatchUp(bootstrap, d, reader.seen),  # type: ignore[union-attr]
                concurrency=concurrency,
                high_water=high_water,
            )
            dispatchers.append(dispatcher)
            followers.setdefault(topic, []).append(dispatcher)
        reader = TopicReader(bootstrap, followers, offsets)
        await reader.start()
        report.flush()  # every Trigger's committed level, before saying ready
        report.show(Flow("ready", detail=f"{len(dispatchers)} triggers"))
        tasks = [
            asyncio.create_task(reader.run(stop), name="reader"),
            asyncio.create_task(_commit_loop(dispatchers, stop), name="commits"),
        ]
        stopped = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            stopped.cancel()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(d.shutdown() for d in dispatchers), return_exceptions=True)
        report.flush()
        if reader is not None:
            await reader.stop()
        await client.aclose()
        await kafka_producer.stop()
        await kafka_client.close()


async def _commit_loop(dispatchers: list[TriggerDispatcher], stop: asyncio.Event) -> None:
    """Every Trigger commits what reached its final outcome, every COMMIT_EVERY seconds."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), COMMIT_EVERY)
        await asyncio.gather(*(d.commit() for d in dispatchers))


def serve(
    eventing_dir: str | None,
    bootstrap: str,
    routes: dict[str, str],
    concurrency: int,
    console_port: int | None = None,
) -> int:
    """The dispatcher as its own process (`python -m nextup_dev.dispatcher`): Tally and Flow
    lines on stdout, stops on SIGTERM or SIGINT, and when the `nextup dev` that started it is
    gone. With `console_port`, its delivery attempts for the console on 127.0.0.1 there."""
    import os
    import signal
    import sys
    from pathlib import Path

    from nextup_dev.manifests import RENDERED, load

    eventing = load(Path(eventing_dir) if eventing_dir else None)
    out = sys.stdout

    def write(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    def log(line: str) -> None:
        # stderr is .nextup/logs/dispatcher.log (stdout carries the lines for nextup dev).
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

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

        from nextup_dev.console import attempts

        ring = attempts.AttemptLog() if console_port else None
        server = None
        if ring is not None:
            try:
                server = await attempts.serve(ring, console_port)
            except OSError as exc:  # the console goes without attempts; deliveries do not stop
                log(f"console: cannot listen on 127.0.0.1:{console_port}: {exc.strerror}")
                ring = None
        report = Reporter(write, log=log, attempts=ring)
        log(
            f"dispatching for {len(eventing.triggers)} Triggers of {eventing_dir or RENDERED}, "
            f"Kafka {bootstrap}, {concurrency} deliveries in flight per unordered Trigger"
        )
        watcher = asyncio.create_task(orphaned())
        reporter = asyncio.create_task(report.run(stop))
        # How many events one Trigger may hold queued before it reads on its own: small
        # in tests that make a Trigger lag, large (a few seconds of work) otherwise.
        high_water = int(os.environ.get("NEXTUP_DEV_QUEUE_LIMIT") or HIGH_WATER)
        try:
            await run_dispatchers(
                eventing, bootstrap, routes, report, stop, concurrency, high_water
            )
        finally:
            watcher.cancel()
            stop.set()
            await reporter
            if server is not None:
                server.close()

    run_loop(main())
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m nextup_dev.dispatcher`: what `nextup dev` starts; not a command for people."""
    import argparse

    parser = argparse.ArgumentParser(prog="nextup_dev.dispatcher", description=serve.__doc__)
    parser.add_argument("--kafka", required=True, metavar="HOST:PORT")
    parser.add_argument(
        "--eventing",
        help="directory of eventing manifests (default: rendered from nextup.functions)",
    )
    parser.add_argument("--route", action="append", default=[], metavar="NAME=URL")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--console-port", type=int, help="serve delivery attempts here")
    args = parser.parse_args(argv)
    routes = dict(route.split("=", 1) for route in args.route)
    return serve(args.eventing, args.kafka, routes, args.concurrency, args.console_port)


if __name__ == "__main__":
    raise SystemExit(main())
