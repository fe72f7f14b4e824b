"""CloudEvents over HTTP: both content modes in, clear 4xx errors for everything else."""

from __future__ import annotations

import json

import pytest

from nextup.envelope import (
    MAX_BODY,
    derived_id,
    event_key,
    make_event,
    parse_http,
    to_binary,
    to_structured,
)
from nextup.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

DATA = {"user_id": "u1", "task_id": "t1"}


def binary_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "e1",
        "ce-source": "/todo",
        "ce-type": "todo.task.completed",
        "content-type": "application/json",
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


def structured_body(**overrides) -> bytes:
    envelope = {
        "specversion": "1.0",
        "id": "e1",
        "source": "/todo",
        "type": "todo.task.completed",
        "datacontenttype": "application/json",
        "data": DATA,
    }
    envelope.update(overrides)
    return json.dumps({k: v for k, v in envelope.items() if v is not None}).encode()


def test_binary_mode():
    event = parse_http(
        binary_headers(**{"ce-traceparent": "00-ab-cd-01"}), json.dumps(DATA).encode()
    )
    assert event["id"] == "e1"
    assert event["type"] == "todo.task.completed"
    assert event["traceparent"] == "00-ab-cd-01"
    assert event.data == DATA


def test_structured_mode():
    event = parse_http({"content-type": "application/cloudevents+json"}, structured_body())
    assert event["source"] == "/todo"
    assert event.data == DATA


def test_structured_envelope_sent_as_plain_json_is_accepted():
    event = parse_http({"content-type": "application/json"}, structured_body())
    assert event["id"] == "e1"
    assert event.data == DATA


def test_header_names_are_case_insensitive():
    headers = {k.upper(): v for k, v in binary_headers().items()}
    assert parse_http(headers, b"{}")["id"] == "e1"


@pytest.mark.parametrize(
    ("headers", "body", "error", "field"),
    [
        ({"content-type": "application/json"}, b'{"a": 1}', BadRequest, "specversion"),
        ({"content-type": "text/plain"}, b"hello", UnsupportedMediaType, "content-type"),
        (binary_headers(**{"ce-specversion": "0.3"}), b"{}", BadRequest, "specversion"),
        (binary_headers(**{"ce-id": None}), b"{}", BadRequest, "id"),
        (binary_headers(**{"ce-source": ""}), b"{}", BadRequest, "source"),
        (binary_headers(**{"ce-type": None}), b"{}", BadRequest, "type"),
        (binary_headers(), b"{not json", BadRequest, "data"),
        (binary_headers(**{"ce-id": "x" * 300}), b"{}", BadRequest, "id"),
        (binary_headers(**{"ce-time": "yesterday"}), b"{}", BadRequest, "time"),
        ({"content-type": "application/cloudevents+json"}, b"{oops", BadRequest, None),
        (
            {"content-type": "application/cloudevents+json"},
            structured_body(specversion="2.0"),
            BadRequest,
            "specversion",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            structured_body(id=None),
            BadRequest,
            "id",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            structured_body(type=7),
            BadRequest,
            "type",
        ),
        ({"content-type": "application/cloudevents+json"}, b"[1, 2]", BadRequest, "specversion"),
        ({"content-type": "application/cloudevents-batch+json"}, b"[]", UnsupportedMediaType, None),
    ],
)
def test_not_a_valid_cloudevent(headers, body, error, field):
    with pytest.raises(error) as caught:
        parse_http(headers, body)
    assert caught.value.field == field
    assert caught.value.error


def test_too_many_extensions():
    headers = binary_headers(**{f"ce-ext{i}": "v" for i in range(40)})
    with pytest.raises(BadRequest, match="extension"):
        parse_http(headers, b"{}")


def test_oversize_body_is_413():
    with pytest.raises(PayloadTooLarge):
        parse_http(binary_headers(), b" " * (MAX_BODY + 1))


def test_non_json_data_is_kept_as_bytes_for_the_decoder_to_judge():
    event = parse_http(binary_headers(**{"content-type": "text/plain"}), b"tick")
    assert event.data == b"tick"


def test_event_key_is_source_plus_id():
    a = parse_http(binary_headers(), b"{}")
    same = parse_http(binary_headers(**{"ce-type": "other"}), b'{"x": 1}')
    other_source = parse_http(binary_headers(**{"ce-source": "/elsewhere"}), b"{}")
    assert event_key(a) == event_key(same)
    assert event_key(a) != event_key(other_source)
    assert derived_id(a, "reply") == derived_id(same, "reply") != derived_id(a, "other")


def test_emitted_event_round_trips_in_both_modes_and_keeps_trace_context():
    cause = parse_http(binary_headers(**{"ce-traceparent": "00-trace-span-01"}), b"{}")
    reply = make_event(
        "todo.occurrence.requested",
        "/nextup/complete-task",
        {"a": "ü"},
        id_="r1",
        cause=cause,
        partition_key="u1",
    )
    headers, body = to_binary(reply)
    again = parse_http(headers, body)
    assert again["traceparent"] == "00-trace-span-01"
    assert again["partitionkey"] == "u1"
    assert again.data == {"a": "ü"}
    headers, body = to_structured(reply)
    assert parse_http(headers, body)["id"] == "r1"
