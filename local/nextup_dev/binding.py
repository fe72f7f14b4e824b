"""A CloudEvent on the broker topic (Kafka binary binding) and on its way to a subscriber
(HTTP binary mode), as the Knative Kafka Broker stores and delivers it.

On the topic every attribute is a `ce_<name>` header, `datacontenttype` travels as
`content-type`, the value is the data, and the record key is the `partitionkey`
extension. Over HTTP the same attributes become `ce-<name>` headers, so delivering a
record is a renaming of headers, with no parsing of the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nextup.envelope import CloudEvent, to_binary

Headers = list[tuple[str, bytes]]
CONTENT_TYPE = "content-type"


@dataclass(frozen=True)
class Record:
    """What is produced to, or was consumed from, a Kafka topic."""

    key: bytes | None
    value: bytes
    headers: Headers


def partition_key(event: CloudEvent) -> str | None:
    """The `partitionkey` extension; failing that the data's `user_id`, so that one user's
    events share a partition and keep their order."""
    key = event.get("partitionkey")
    if key:
        return str(key)
    data = event.data
    if isinstance(data, Mapping) and isinstance(data.get("user_id"), (str, int)):
        return str(data["user_id"])
    return None


def _attributes_as_headers(attributes: Mapping[str, Any]) -> Headers:
    headers: Headers = []
    for name, value in attributes.items():
        if value is None or name in ("data", "data_base64"):
            continue
        header = CONTENT_TYPE if name == "datacontenttype" else f"ce_{name}"
        headers.append((header, str(value).encode()))
    return headers


def record_from_event(event: CloudEvent) -> Record:
    """The record the Kafka Broker stores for `event`."""
    key = partition_key(event)
    data = event.data
    if data is None or isinstance(data, (bytes, bytearray)):
        headers = _attributes_as_headers(event.get_attributes())
        value = bytes(data or b"")
    else:
        http_headers, value = to_binary(event)  # the one JSON serialisation, nextup.envelope's
        headers = [
            (CONTENT_TYPE if name == CONTENT_TYPE else "ce_" + name[3:], str(v).encode())
            for name, v in http_headers.items()
            if name == CONTENT_TYPE or name.startswith("ce-")
        ]
    return Record(key.encode() if key else None, value, headers)


def attributes(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """The CloudEvent attributes of a record, as strings (what Trigger filters see)."""
    found: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith("ce_"):
            found[lowered[3:]] = value.decode(errors="replace")
        elif lowered == CONTENT_TYPE:
            found["datacontenttype"] = value.decode(errors="replace")
    return found


def http_headers(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """A record's headers as a binary-mode HTTP request's."""
    out: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith("ce_"):
            out["ce-" + lowered[3:]] = value.decode(errors="replace")
        elif lowered == CONTENT_TYPE:
            out[CONTENT_TYPE] = value.decode(errors="replace")
    return out


def with_extensions(headers: Iterable[tuple[str, bytes]], extensions: Mapping[str, str]) -> Headers:
    """`headers` with `extensions` set (replacing any of the same name)."""
    names = {f"ce_{name}" for name in extensions}
    kept = [(name, value) for name, value in headers if name.lower() not in names]
    return kept + [(f"ce_{name}", value.encode()) for name, value in extensions.items()]
