"""Dead letters read from what `kafka-console-consumer.sh` prints, for a topic nextup dev
does not mirror (the kind cluster's `nextup-dead-letters`; `nextup deadletters ... --records`).

infra/kind/dead-letters.sh runs the consumer with

    --property print.timestamp=true --property print.partition=true
    --property print.offset=true --property print.headers=true --property headers.separator='|'

which prints one record a line, its fields tab-separated:
`CreateTime:MS<TAB>Partition:P<TAB>Offset:O<TAB>name:value|name:value<TAB>data`. The
timestamp, partition and offset are optional (without them a letter has no `at`, and
--since/--until select nothing). Each record becomes the document the dev's mirror writes
(`nextup_dev.deadletters.document`, the one decoder of the `knativeerror*` extensions), so
the selection of `nextup_dev.console.redrive` applies unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from nextup.envelope import to_binary
from nextup_dev.console.redrive import event_of
from nextup_dev.deadletters import document

HEADER_SEPARATOR = "|"
REQUIRED = frozenset({"id", "source", "type", "specversion"})
_TIMESTAMP = re.compile(r"(?:CreateTime|LogAppendTime):(-?\d+)|NO_TIMESTAMP")
_PARTITION = re.compile(r"Partition:(\d+)")
_OFFSET = re.compile(r"Offset:(\d+)")


def parse(line: str, topic: str | None = None) -> dict[str, Any] | None:
    """One consumer line as a dead-letter document; None for a line that is not a record
    of a CloudEvent (blank, the tool's notes, headers without id, source, type, specversion)."""
    fields = line.rstrip("\r\n").split("\t")
    timestamp = partition = offset = None
    while len(fields) > 1:
        if match := _TIMESTAMP.fullmatch(fields[0]):
            timestamp = int(match[1]) if match[1] else None
        elif match := _PARTITION.fullmatch(fields[0]):
            partition = int(match[1])
        elif match := _OFFSET.fullmatch(fields[0]):
            offset = int(match[1])
        else:
            break
        fields.pop(0)
    if len(fields) < 2:
        return None
    head, data = fields[0], "\t".join(fields[1:])
    headers = []
    for header in head.split(HEADER_SEPARATOR):
        name, colon, value = header.partition(":")  # a value keeps its own colons
        if colon:
            headers.append((name.strip(), value.encode()))
    letter = document(topic, partition, offset, headers, data.encode(), timestamp)
    if not set(letter["attributes"]) >= REQUIRED:
        return None
    return letter


def read(lines: Iterable[str], topic: str | None = None) -> list[dict[str, Any]]:
    """Every dead letter of the consumer's output, newest first (as the dev lists its own);
    letters without a timestamp keep the topic's order."""
    letters = [letter for line in lines if (letter := parse(line, topic)) is not None]
    return sorted(letters, key=lambda letter: letter["at"] or 0, reverse=True)


def http_request(letter: dict[str, Any], data: Any = None) -> tuple[dict[str, str], bytes]:
    """The letter's event in HTTP binary mode, as `event_of` makes it again (no
    `knativeerror*` extensions; `data` replaces its data): headers and body."""
    event = event_of(letter, data)
    headers, body = to_binary(event)
    original = letter.get("data")
    if data is None and isinstance(original, str) and "json" not in headers["content-type"]:
        body = original.encode()  # text that is not JSON goes as it came, not as a JSON string
    return headers, body
