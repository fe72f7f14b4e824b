"""One read of the broker topic for every Trigger, each keeping its own place in it.

Twelve Triggers each fetching and decoding every record cost twelve fetches and twelve
decodes per record (and twelve fetch loops polling Tansu while idle). Here one consumer,
with the topic's partitions assigned by hand, reads each record once and offers it to
every Trigger of its broker; a Trigger takes only records at or past its own next offset,
so after a restart each resumes from its own committed offset (the reader starts from the
lowest of them), and nothing one Trigger committed is skipped by another.

A Trigger that falls behind (its queue is full: a slow subscriber, a delivery waiting out
its backoff in order) must neither hold the others up nor hoard records in memory: it
lets go of the shared stream for that partition and reads it with its own consumer from
its next offset (`CatchUp`), at its own pace, until it is back at the shared reader's
position, and takes records from the shared stream again from there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from nextup_dev import binding
from nextup_dev.groupoffsets import GroupOffsets
from nextup_dev.kafka import FETCH_SETTINGS

Attributes = dict[str, str]
BATCH = 1000  # records taken from the client per poll


class Follower(Protocol):
    """What the reader needs of a Trigger's dispatcher."""

    @property
    def group(self) -> str: ...

    def start_at(self, tp: TopicPartition, offset: int, committed: int) -> None: ...

    def offer(self, tp: TopicPartition, record: Any, attributes: Attributes) -> None: ...


class TopicReader:
    """Reads the broker topics once and offers each record to the Triggers reading it."""

    def __init__(
        self,
        bootstrap: str,
        followers: dict[str, list[Follower]],
        offsets: GroupOffsets,
    ) -> None:
        self.bootstrap = bootstrap
        self.followers = followers  # topic -> the Triggers of its broker
        self.offsets = offsets
        # One past the last record offered, per partition: where a lagging Trigger's own
        # reader has to get to before it can take the shared stream again.
        self.seen: dict[TopicPartition, int] = {}
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, **FETCH_SETTINGS)
        await consumer.start()
        self.consumer = consumer
        partitions: list[TopicPartition] = []
        for topic in self.followers:
            partitions += await _partitions(consumer, topic)
        consumer.assign(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        lowest: dict[TopicPartition, int] = {}
        for topic, followers in self.followers.items():
            mine = [tp for tp in partitions if tp.topic == topic]
            for follower in followers:
                committed = await self.offsets.committed(follower.group, mine)
                for tp in mine:
                    # A group with no commit yet reads from the start (auto.offset.reset
                    # earliest): topics exist before any event is accepted, so it misses none.
                    start = committed[tp] if committed[tp] is not None else beginnings[tp]
                    start = max(start, beginnings[tp])
                    # A group that never committed is done with what it will never read.
                    done = committed[tp] if committed[tp] is not None else start
                    follower.start_at(tp, start, done)
                    lowest[tp] = min(lowest.get(tp, start), start)
        for tp in partitions:
            position = lowest.get(tp, beginnings[tp])
            consumer.seek(tp, position)
            self.seen[tp] = position

    async def run(self, stopping: asyncio.Event) -> None:
        consumer = self.consumer
        assert consumer is not None
        followers = self.followers
        seen = self.seen
        attributes_of = binding.attributes
        while not stopping.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=BATCH)
            for tp, records in batch.items():
                readers = followers[tp.topic]
                for record in records:
                    attributes = attributes_of(record.headers)
                    for follower in readers:
                        follower.offer(tp, record, attributes)
                    seen[tp] = record.offset + 1

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()


class Lagging(Protocol):
    """What a Trigger that fell behind offers its own reader."""

    def next_offset(self, tp: TopicPartition) -> int: ...

    def has_room(self, tp: TopicPartition) -> bool: ...

    def take(self, tp: TopicPartition, record: Any, attributes: Attributes) -> None: ...

    def rejoin(self, tp: TopicPartition) -> None: ...


class CatchUp:
    """One Trigger's own consumer for the partitions it let go of; created on the first
    lag and kept (idle, with nothing assigned, it fetches nothing)."""

    def __init__(self, bootstrap: str, trigger: Lagging, seen: dict[TopicPartition, int]):
        self.bootstrap = bootstrap
        self.trigger = trigger
        self.seen = seen
        self.partitions: set[TopicPartition] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, tp: TopicPartition) -> None:
        if tp in self.partitions:
            return
        self.partitions.add(tp)
        self._changed.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="catch-up")

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, **FETCH_SETTINGS)
        await consumer.start()
        trigger = self.trigger
        assigned: set[TopicPartition] = set()
        try:
            while True:
                if not self.partitions:
                    if assigned:
                        consumer.assign([])
                        assigned = set()
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                if assigned != self.partitions:
                    assigned = set(self.partitions)
                    consumer.assign(list(assigned))
                    for tp in assigned:
                        consumer.seek(tp, trigger.next_offset(tp))
                ready = [tp for tp in assigned if trigger.has_room(tp)]
                _flow(consumer, assigned, ready)
                if not ready:
                    await asyncio.sleep(0.05)
                    continue
                batch = await consumer.getmany(*ready, timeout_ms=100, max_records=BATCH)
                for tp, records in batch.items():
                    if tp not in self.partitions:
                        continue
                    for record in records:
                        if record.offset >= trigger.next_offset(tp):
                            trigger.take(tp, record, binding.attributes(record.headers))
                for tp in list(self.partitions):
                    if trigger.next_offset(tp) >= self.seen.get(tp, 0):
                        self.partitions.discard(tp)
                        trigger.rejoin(tp)
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _flow(consumer: AIOKafkaConsumer, assigned: Iterable[TopicPartition], ready: list) -> None:
    paused = consumer.paused()
    for tp in assigned:
        if tp in ready and tp in paused:
            consumer.resume(tp)
        elif tp not in ready and tp not in paused:
            consumer.pause(tp)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer.topics()  # fresh metadata: a new client knows no topic yet
    found = consumer.partitions_for_topic(topic)
    if not found:
        raise RuntimeError(f"Kafka topic {topic} has no partitions (was it created?)")
    return [TopicPartition(topic, p) for p in sorted(found)]
