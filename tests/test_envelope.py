"""CloudEvents over HTTP: both content modes in, clear 4xx errors for everything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER_TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


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
        binary_headers(**{"ce-traceparent": TRACE}),
        json.dumps(DATA).encode(),
    )
    assert event["id"] == "e1"
    assert event["type"] == "todo.task.completed"
    assert event["traceparent"] == TRACE
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
    cause = parse_http(
        binary_headers(**{"ce-traceparent": OTHER_TRACE}),
        b"{}",
    )
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
    assert again["traceparent"] == OTHER_TRACE
    assert again["partitionkey"] == "u1"
    assert again.data == {"a": "ü"}
    headers, body = to_structured(reply)
    assert parse_http(headers, body)["id"] == "r1"


def structured(**attributes) -> tuple[dict[str, str], bytes]:
    envelope = {"specversion": "1.0", "id": "e1", "source": "/todo", "type": "t", **attributes}
    return {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode()


@pytest.mark.parametrize("name", ["id", "source", "type", "subject", "anyext"])
@pytest.mark.parametrize("bad", ["\ud800", "a\udfffb", "\udc80" * 3])
def test_an_attribute_no_encoding_can_carry_is_a_400_naming_it(name: str, bad: str) -> None:
    """JSON can spell lone surrogates; nothing downstream (keys, logs, headers) can."""
    with pytest.raises(BadRequest) as refused:
        parse_http(*structured(**{name: bad}))
    assert refused.value.field == name and "Unicode" in refused.value.error


@given(text=st.text(min_size=1, max_size=40))
@settings(max_examples=200)
def test_whatever_text_an_accepted_event_carries_can_be_hashed_logged_and_sent(text) -> None:
    """Property: every attribute of an event that parses can be encoded for what is done
    with it (its dedup key, a JSON log line, the headers of a reply in binary mode)."""
    try:
        event = parse_http(*structured(source=text, subject=text, traceparent=text))
    except BadRequest:
        return
    event_key(event)
    json.dumps(dict(event.get_attributes()), ensure_ascii=False).encode()
    reply = make_event("r", "/nextup/test", {}, id_="r1", cause=event)
    headers, _ = to_binary(reply)
    for value in headers.values():
        value.encode("latin-1")


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0ü",
        "ü",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ],
)
def test_trace_context_that_is_not_w3c_is_dropped_not_carried(traceparent: str) -> None:
    event = parse_http(*structured(traceparent=traceparent, tracestate="vendor=1"))
    assert event.get("traceparent") is None and event.get("tracestate") is None
    reply = make_event("r", "/nextup/test", {}, id_="r1", cause=event)
    assert "ce-traceparent" not in to_binary(reply)[0]


def test_valid_trace_context_travels_on_and_a_bad_tracestate_alone_is_dropped() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    event = parse_http(*structured(traceparent=parent, tracestate="vendor=ü"))
    assert event.get("traceparent") == parent and event.get("tracestate") is None
    reply = make_event("r", "/nextup/test", {}, id_="r1", cause=event)
    assert to_binary(reply)[0]["ce-traceparent"] == parent
