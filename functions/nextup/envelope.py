"""CloudEvents 1.0 over HTTP: parse either content mode, build and serialise replies.

Events are the cloudevents SDK's `CloudEvent`, built here from attributes checked first:
every way a request can fail to be a CloudEvent becomes a 4xx naming the attribute at
fault (the SDK's own HTTP parser raises exceptions unfit for a client, invents `id` and
`time` when they are missing, and costs more than the rest of a request together).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cloudevents.conversion import to_structured as _sdk_to_structured
from cloudevents.http import CloudEvent

from nextup import jsontext
from nextup.errors import BadRequest, HeadersTooLarge, PayloadTooLarge, UnsupportedMediaType

__all__ = [
    "MAX_BODY",
    "CloudEvent",
    "derived_id",
    "event_key",
    "event_time",
    "make_event",
    "parse_http",
    "to_binary",
    "to_structured",
]

# The data limit is 256 KiB; a structured body carries the attributes too.
MAX_DATA = 256 * 1024
MAX_BODY = MAX_DATA + 16 * 1024
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
REQUIRED = ("id", "source", "type")
# Attribute value limits: generous for real producers, small enough that keys built from
# them (idempotency records, log lines) stay bounded.
MAX_ATTRIBUTE = {"id": 256, "source": 1024, "type": 256, "subject": 1024}
MAX_EXTENSION_VALUE = 2048
MAX_EXTENSIONS = 32
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]{1,20}")
# The CloudEvents String type excludes control characters (U+0000-U+001F, U+007F-U+009F).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# All request headers together; Knative's own (ce-*, traceparent, a bearer token) are a
# few KiB. Bigger is refused with 431 before anything reads them.
MAX_HEADERS = 32 * 1024
# Attributes carried from an event into everything emitted because of it (W3C trace context).
TRACE_ATTRIBUTES = ("traceparent", "tracestate")


def _json_media(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _check_attributes(attributes: Mapping[str, Any]) -> None:
    spec = attributes.get("specversion")
    if spec is None:
        raise BadRequest("not a CloudEvent: specversion is missing", field="specversion")
    if spec != "1.0":
        raise BadRequest(
            f"unsupported CloudEvents specversion {str(spec)[:16]!r}: only 1.0", field="specversion"
        )
    for name in REQUIRED:
        value = attributes.get(name)
        if not isinstance(value, str) or not value:
            raise BadRequest(f"CloudEvent attribute {name!r} is missing or empty", field=name)
    extensions = 0
    for name, value in attributes.items():
        if name in ("data", "data_base64"):
            continue
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise BadRequest(f"invalid CloudEvent attribute name {name[:32]!r}", field=name[:32])
        limit = MAX_ATTRIBUTE.get(name, MAX_EXTENSION_VALUE)
        if isinstance(value, str) and len(value) > limit:
            raise BadRequest(
                f"CloudEvent attribute {name!r} is longer than {limit} characters", field=name
            )
        # Attribute values are strings (or a boolean or integer extension), never objects,
        # lists or null: they are copied into headers of the events emitted in reply.
        if isinstance(value, float) or not isinstance(value, str | bool | int):
            raise BadRequest(f"CloudEvent attribute {name!r} is not a string", field=name)
        if isinstance(value, str) and _CONTROL.search(value):
            raise BadRequest(
                f"CloudEvent attribute {name!r} contains control characters", field=name
            )
        if isinstance(value, str) and not _encodable(value):
            # A lone surrogate (JSON allows "\ud800"): no key, log line or header can
            # carry it, so it is refused before anything is done with the event.
            raise BadRequest(f"CloudEvent attribute {name!r} is not valid Unicode text", field=name)
        if name not in (
            "specversion",
            "id",
            "source",
            "type",
            "datacontenttype",
            "dataschema",
            "subject",
            "time",
        ):
            extensions += 1
    if extensions > MAX_EXTENSIONS:
        raise BadRequest(
            f"more than {MAX_EXTENSIONS} CloudEvent extension attributes", field="extensions"
        )
    time = attributes.get("time")
    if time is not None:
        try:
            datetime.fromisoformat(str(time).replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(
                "CloudEvent attribute 'time' is not an RFC 3339 timestamp", field="time"
            ) from None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# W3C Trace Context: `version-traceid-parentid-flags`, lower-case hex, ids not all zero.
_TRACEPARENT = re.compile(
    r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
)
# tracestate: list members of printable ASCII, at most 512 characters in all.
_TRACESTATE = re.compile(r"[\x20-\x7e]{0,512}")


def _trace_context(attributes: dict[str, Any]) -> dict[str, Any]:
    """Trace context is carried into every event emitted in reply (and into HTTP headers,
    which hold Latin-1 at most): one that is not valid W3C Trace Context is dropped, as
    the W3C spec tells a receiver to, before anything is done with the event."""
    parent = attributes.get("traceparent")
    if parent is None:
        return attributes
    state = attributes.get("tracestate")
    if not isinstance(parent, str) or not _TRACEPARENT.fullmatch(parent):
        return {k: v for k, v in attributes.items() if k not in TRACE_ATTRIBUTES}
    if state is not None and (not isinstance(state, str) or not _TRACESTATE.fullmatch(state)):
        return {k: v for k, v in attributes.items() if k != "tracestate"}
    return attributes


def _json_data(body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("event data is not valid JSON", field="data") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise BadRequest("event data is nested too deeply", field="data") from None


def _binary(lowered: dict[str, str], body: bytes) -> CloudEvent:
    attributes: dict[str, Any] = {k[3:]: v for k, v in lowered.items() if k.startswith("ce-")}
    _check_attributes(attributes)
    content_type = lowered.get("content-type")
    if content_type:
        attributes["datacontenttype"] = content_type
    # Non-JSON data is kept as bytes; `events.decode` refuses it where an object is needed.
    data = (_json_data(body) if _json_media(content_type) else body) if body else None
    return CloudEvent(_trace_context(attributes), data)


def _structured(media: str, body: bytes) -> CloudEvent:
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        if media == STRUCTURED:
            raise BadRequest("structured CloudEvent body is not valid JSON") from None
        envelope = None
    except RecursionError:  # arrays or objects nested thousands deep
        raise BadRequest("structured CloudEvent body is nested too deeply", field="data") from None
    if not isinstance(envelope, dict) or "specversion" not in envelope:
        raise BadRequest(
            "not a CloudEvent: send ce-* headers (binary mode) or an "
            f"{STRUCTURED} body (structured mode)",
            field="specversion",
        )
    _check_attributes(envelope)
    attributes = {k: v for k, v in envelope.items() if k not in ("data", "data_base64")}
    data = envelope.get("data")
    if "data_base64" in envelope:
        try:
            data = base64.b64decode(envelope["data_base64"], validate=True)
        except (ValueError, TypeError):
            raise BadRequest("data_base64 is not valid base64", field="data_base64") from None
        if _json_media(envelope.get("datacontenttype")):
            data = _json_data(data)
    return CloudEvent(_trace_context(attributes), data)


def parse_http(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """The CloudEvent in an HTTP request, binary or structured mode.

    Raises BadRequest (400), PayloadTooLarge (413) or UnsupportedMediaType (415).
    The event is the SDK's `CloudEvent`, built here from attributes already checked: the
    SDK's own HTTP parser costs more than the rest of a request's handling together.
    """
    if len(body) > MAX_BODY:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY} bytes", field="data")
    lowered = {k.lower(): v for k, v in headers.items()}
    if sum(len(k) + len(v) for k, v in lowered.items()) > MAX_HEADERS:
        raise HeadersTooLarge(f"request headers are larger than {MAX_HEADERS} bytes")
    media = lowered.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == BATCH:
        raise UnsupportedMediaType(
            "batched CloudEvents are not supported: send one event per request"
        )
    if "ce-specversion" in lowered:
        event = _binary(lowered, body)
    elif media == STRUCTURED or media in ("application/json", ""):
        # Plain application/json is accepted when the body is a structured envelope:
        # hand-written producers (curl, scripts) often send it that way.
        event = _structured(media, body)
    else:
        raise UnsupportedMediaType(
            f"unsupported content type {media[:64]!r}: use binary mode (ce-* headers) "
            f"or {STRUCTURED}",
            field="content-type",
        )
    if isinstance(event.data, (bytes, bytearray)) and len(event.data) > MAX_DATA:
        raise PayloadTooLarge(f"event data is larger than {MAX_DATA} bytes", field="data")
    return event


def event_time(event: CloudEvent) -> datetime | None:
    """The event's `time` attribute as an aware datetime, if it has a readable one."""
    raw = event.get("time")
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def event_key(event: CloudEvent) -> str:
    """The deduplication key of an event: CloudEvents identity is `source` + `id`."""
    return hashlib.sha256(f"{event['source']}\0{event['id']}".encode()).hexdigest()[:40]


def derived_id(cause: CloudEvent, purpose: str) -> str:
    """A stable id for an event emitted because of `cause`: a redelivery emits the same id."""
    return hashlib.sha256(f"{event_key(cause)}\0{purpose}".encode()).hexdigest()[:32]


def make_event(
    type_: str,
    source: str,
    data: Any,
    *,
    id_: str,
    cause: CloudEvent | None = None,
    subject: str | None = None,
    partition_key: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """A JSON CloudEvent, carrying `cause`'s trace context."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": id_,
        "source": source,
        "type": type_,
        "datacontenttype": "application/json",
        "time": (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
    }
    if subject:
        attributes["subject"] = subject
    if partition_key:
        attributes["partitionkey"] = partition_key
    if cause is not None:
        for name in TRACE_ATTRIBUTES:
            if cause.get(name):
                attributes[name] = cause[name]
    return CloudEvent(attributes, data)


def to_binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """HTTP binary mode: attributes as ce-* headers, the JSON data as the body."""
    headers = {"content-type": "application/json"}
    for name, value in event.get_attributes().items():
        if name == "datacontenttype":
            headers["content-type"] = value
        else:
            headers[f"ce-{name}"] = value if isinstance(value, str) else json.dumps(value)
    data = event.data
    if data is None:
        return headers, b""
    return headers, data if isinstance(data, (bytes, bytearray)) else jsontext.dumps(data)


def to_structured(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    return _sdk_to_structured(event)
