"""Committed offsets of many consumer groups over one Kafka connection.

The dispatcher reads the broker topic once for all Triggers (see `fanout`), but each
Trigger keeps its own consumer group, `knative-trigger-<namespace>-<name>`, and its own
committed offsets there: what `kafka-consumer-groups --describe` shows and what a restart
resumes from. Kafka takes an offset commit for a group from a client that is not one of
its members (generation -1, no member id: the "simple consumer" commit that aiokafka
itself sends for a manually assigned consumer), so one client commits for all of them
instead of twelve consumers each holding a connection, a heartbeat and a fetch loop.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient, ConnectionGroup, CoordinationType
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest

# Errors after which the group's coordinator is looked up again before the next try.
_MOVED = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR
ATTEMPTS = 5


class GroupOffsets:
    def __init__(self, client: AIOKafkaClient) -> None:
        self.client = client
        self._coordinators: dict[str, int] = {}

    async def _coordinator(self, group: str) -> int:
        node = self._coordinators.get(group)
        if node is None:
            node = await self.client.coordinator_lookup(CoordinationType.GROUP, group)
            self._coordinators[group] = node
        return node

    async def _send(self, group: str, request):  # type: ignore[no-untyped-def]
        node = await self._coordinator(group)
        try:
            return await self.client.send(node, request, group=ConnectionGroup.COORDINATION)
        except KafkaError:
            self._coordinators.pop(group, None)
            raise

    async def committed(self, group: str, partitions: list[TopicPartition]) -> dict:
        """Each partition's committed offset in `group` (None where it has none)."""
        by_topic: dict[str, list[int]] = defaultdict(list)
        for tp in partitions:
            by_topic[tp.topic].append(tp.partition)
        for attempt in range(ATTEMPTS):
            response = await self._send(group, OffsetFetchRequest(group, list(by_topic.items())))
            found: dict[TopicPartition, int | None] = {}
            retry = False
            for topic, entries in response.topics:
                for partition, offset, _metadata, code in entries:
                    if code in _MOVED:
                        retry = True
                    elif code:
                        raise for_code(code)(f"offset fetch for {group}")
                    found[TopicPartition(topic, partition)] = offset if offset >= 0 else None
            if not retry:
                return {tp: found.get(tp) for tp in partitions}
            self._coordinators.pop(group, None)
            await asyncio.sleep(0.1 * (attempt + 1))
        raise KafkaError(f"offset fetch for {group}: coordinator kept moving")

    async def commit(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        """Commit `offsets` (the next offset to read, per partition) for `group`."""
        by_topic: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        for tp, offset in offsets.items():
            by_topic[tp.topic].append((tp.partition, offset, ""))
        request = OffsetCommitRequest(
            group,
            OffsetCommitRequest.DEFAULT_GENERATION_ID,
            "",
            OffsetCommitRequest.DEFAULT_RETENTION_TIME,
            list(by_topic.items()),
        )
        response = await self._send(group, request)
        for _topic, entries in response.topics:
            for _partition, code in entries:
                if code in _MOVED:
                    self._coordinators.pop(group, None)
                if code:
                    raise for_code(code)(f"offset commit for {group}")
