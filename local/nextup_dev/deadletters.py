"""Dead letters made readable: the dead-letter topic mirrored into one JSON file per event
under `.nextup/dead-letters/`, with the error extensions decoded.

The topic stays the source of truth (as the KafkaSink's topic is in a cluster). A file is
named after the record's partition and offset, so mirroring the same record twice (after
a restart) rewrites the same file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nextup_dev import binding
from nextup_dev.delivery import CODE, DATA, DEST
from nextup_dev.kafka import CONSUMER_SETTINGS
from nextup_dev.status import Flow

MIRROR_GROUP = "nextup-dev-dead-letter-mirror"


def _text(raw: bytes) -> Any:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}
    try:
        return json.loads(text)
    except ValueError:
        return text


def document(
    topic: str | None,
    partition: int | None,
    offset: int | None,
    headers,
    value: bytes,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """What a person needs to see of one dead letter (`at`: when it was dead-lettered). An
    error answer that is not base64 after all is shown as it came."""
    attributes = binding.attributes(headers)
    error: dict[str, Any] = {"destination": attributes.get(DEST), "status": None, "body": None}
    if attributes.get(CODE, "").isdigit():
        error["status"] = int(attributes[CODE])
    if attributes.get(DATA):
        try:
            error["body"] = _text(base64.b64decode(attributes[DATA]))
        except (binascii.Error, ValueError):
            error["body"] = attributes[DATA]
    return {
        "at": None if timestamp_ms is None else timestamp_ms / 1000,
        "error": error,
        "attributes": attributes,
        "data": _text(value) if value else None,
        "kafka": {"topic": topic, "partition": partition, "offset": offset},
    }


def filename(timestamp_ms: int, partition: int, offset: int) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(timestamp_ms / 1000))
    return f"{stamp}-p{partition}-o{offset}.json"


async def mirror(
    bootstrap: str,
    topic: str,
    directory: Path,
    report: Callable[[Flow], None],
    stop: asyncio.Event,
    ready: asyncio.Event,
) -> None:
    from aiokafka import AIOKafkaConsumer

    directory.mkdir(parents=True, exist_ok=True)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=MIRROR_GROUP, **CONSUMER_SETTINGS
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            if consumer.assignment():
                ready.set()
            for tp, records in batch.items():
                for record in records:
                    doc = document(
                        topic,
                        tp.partition,
                        record.offset,
                        record.headers,
                        record.value or b"",
                        record.timestamp,
                    )
                    path = directory / filename(record.timestamp, tp.partition, record.offset)
                    partial = path.with_name(f".{path.name}.part")
                    partial.write_text(json.dumps(doc, indent=2) + "\n")
                    partial.rename(path)
                    attributes = doc["attributes"]
                    report(
                        Flow(
                            "mirrored",
                            None,
                            attributes.get("type"),
                            attributes.get("id"),
                            detail=str(path),
                        )
                    )
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()


def newest(directory: Path, limit: int = 1000) -> list[str]:
    """The names of the newest `limit` dead letters mirrored into `directory`, newest first."""
    return sorted((p.name for p in directory.glob("*.json")), reverse=True)[:limit]


def read(path: Path) -> dict[str, Any] | None:
    """One mirrored dead letter, with `file` (its name); None if it is gone or not ours."""
    try:
        letter = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(letter, dict):
        return None
    letter["file"] = path.name
    return letter
