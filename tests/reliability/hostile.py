"""A corpus of crafted bad requests: (name, function, headers, body).

Every one must get a 4xx with a JSON `{"error", "field"}` body and change nothing. The
categories: missing and wrong CloudEvent attributes, bad spec versions, broken JSON,
wrong content types, oversize bodies and headers, ids and strings out of bounds, invalid,
endless and never-occurring rules, absurd dates and time zones, and injection strings in
every field whose rules they break.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

from nextup.envelope import MAX_BODY

Request = tuple[str, str, dict[str, str], bytes]

INJECTIONS = [
    "' OR '1'='1",
    '"; DROP TABLE items; --',
    '{"$gt": ""}',
    "../../../../etc/passwd",
    "{{7*7}}",
    "${jndi:ldap://127.0.0.1/a}",
    "$(reboot)",
    "; rm -rf / #",
    "a\r\nBcc: mallory@example.com",
    "a\x00b",
    "<script>alert(1)</script>",
    "%s%s%s%n",
    "\u202egnp.exe",
    "#owner#victim",
]

# (field path, bad values): each makes the event invalid on its own.
BAD_TASK_FIELDS: dict[str, list[Any]] = {
    "user_id": ["", "x" * 129, "has space", "a#b", "a/b", None, True, [], {"$ne": None}, "ü"],
    "task_id": ["", "t" * 129, "t t", "#owner#t", "t\nx", None, 1.5, {}, "é"],
    "title": ["x" * 501, 42, ["x"], {"x": 1}, True],
    "due_at": [
        "soon",
        "2026-02-30T09:00:00Z",
        "2026-11-24T25:00:00Z",
        "0001-01-01T00:00:00Z",
        "1899-12-31T23:59:59Z",
        "2201-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "+275760-09-13T00:00:00Z",
        "2026-11-24T09:00:00+25:00",
        "2026-11-24T09:00:00+99:99",
        "2026-11-24T23:59:60Z",
        1e20,
        -1e20,
        True,
        [],
    ],
    "timezone": [
        "Nowhere/City",
        "../../etc/passwd",
        "/etc/localtime",
        "UTC\x00",
        "Etc/GMT+99",
        "+05:30",
        "x" * 100,
        "",
        42,
        "Europe/Berlin; DROP TABLE items",
    ],
    "recurrence": ["FREQ=DAILY", 7, [], {"mode": "schedule"}],
    "recurrence.rule": [
        "",
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=SECONDLY",
        "FREQ=HOURLY;BYSECOND=61",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=31",
        "FREQ=MONTHLY;BYMONTH=2,4,6,9,11;BYMONTHDAY=31",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;INTERVAL=400",
        "FREQ=DAILY;COUNT=0",
        "FREQ=DAILY;COUNT=-1",
        "FREQ=DAILY;UNTIL=garbage",
        "FREQ=WEEKLY;BYDAY=XX",
        "FREQ=MONTHLY;BYMONTHDAY=32",
        "FREQ=YEARLY;BYWEEKNO=54",
        "FREQ=DAILY;BYHOUR=24",
        "FREQ=DAILY;BYSETPOS=0",
        "FREQ=DAILY;INTERVAL=99999999999999999999",
        "FREQ=DAILY;FREQ=WEEKLY",
        "FREQ=DAILY;" * 300,
        "x" * 3000,
        "RRULE:FREQ=DAILY\nRDATE:notadate",
        "RRULE:FREQ=DAILY\nBEGIN:VEVENT",
        "FREQ=FORTNIGHTLY",
        "INTERVAL=2",
        "every blue moon",
        "FREQ=MINUTELY;BYMINUTE=61",
        42,
    ],
    "recurrence.mode": ["sometimes", 1, None],
    "recurrence.count": [0, -1, 100_001, "ten", 1e100],
    "recurrence.until": ["garbage", "10000-01-01", "1800-01-01T00:00:00Z", []],
    "reminder": ["PT5M", 5, []],
    "reminder.before": ["yesterday", "-PT5M", "P400D", "PT99999999999999H", 1e308, "P1Y2"],
    "notify": ["ann@example.com", 1, []],
    "notify.email": [
        "not-an-address",
        "a@b",
        "x@y.z\r\nBcc: evil@example.com",
        "<a@b.example>",
        "a" * 250 + "@example.com",
        "a,b@example.com",
        "=?utf-8?b?YQ==?=@=?utf-8?b?eC5jb20+LCBiQGV2aWwuY29tLCBjQGV2aWw=?=.com",
        "ü@example.com",
        "a\x00@example.com",
        "a\x1b@example.com",
        "a\u2028@example.com",
        '"a b"@example.com',
        "a(comment)@example.com",
        "a@[127.0.0.1]",
        "a..b@example.com",
        "l" * 65 + "@example.com",
        42,
    ],
    "notify.webhook": [
        "ftp://example.com/hook",
        "javascript:alert(1)",
        "http://",
        "http:// x.example",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "https://example.com/" + "a" * 2100,
        "//example.com/hook",
        "http://example.com:99999/",
        "http://example.com:abc/",
        "http://example.com:+80/",
        "http://example.com:0/",
        "http://[::1/",
        "http://[fe80::1%25eth0]/",
        "http://a..b/",
        "http://\u2460.1.1.1/",
        "http://user:pass@example.com/",
        "http://" + "l" * 64 + ".example/",
        "http://127.1/",
        "http://0x7f000001/",
        42,
    ],
    "completed_at": ["never", "0000-00-00T00:00:00Z", "3000-01-01T00:00:00Z", False],
}
# The fields whose rules an injection string breaks (title and free text accept it).
INJECTABLE = (
    "user_id",
    "task_id",
    "due_at",
    "timezone",
    "recurrence.rule",
    "recurrence.mode",
    "reminder.before",
    "notify.email",
    "notify.webhook",
    "completed_at",
)

OCCURRENCE_BAD: dict[str, list[Any]] = {
    "series_id": ["", "s s", None, "#owner#x"],
    "occurrence": [-1, "one", 1.5],
    "completed_at": [None, "never", "1800-01-01T00:00:00Z"],
    "recurrence": [
        None,
        {"rule": "FREQ=SECONDLY"},
        {"rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"},
    ],
    "series_start": ["garbage", "0001-01-01T00:00:00Z"],
}


def binary(type_: str, data: Any, *, id_: str | None = None, **extra: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_ or f"hostile-{uuid.uuid4().hex}",
        "ce-source": "/tests/hostile",
        "ce-type": type_,
        "content-type": "application/json",
    }
    headers.update(extra)
    return headers


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()


def structured(envelope: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    return {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode()


def _set(data: dict, path: str, value: Any) -> dict:
    out = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    node = out
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value
    return out


def task(user: str, task_id: str) -> dict[str, Any]:
    return {
        "user_id": user,
        "task_id": task_id,
        "title": "Water the plants",
        "due_at": "2026-11-24T09:00:00+01:00",
        "timezone": "Europe/Berlin",
        "recurrence": {"rule": "FREQ=WEEKLY;BYDAY=MO,TH", "mode": "schedule"},
        "reminder": {"before": "PT15M"},
        "notify": {"email": "ann@example.com"},
    }


def corpus(user: str) -> Iterator[Request]:
    """Every crafted request, made as `user`."""
    good = task(user, f"{user}.h1")
    created = binary("todo.task.created", good)

    # -- the envelope -----------------------------------------------------------------
    for function in ("complete-task", "schedule-next", "send-reminder", "health"):
        type_ = {
            "complete-task": "todo.task.completed",
            "schedule-next": "todo.task.created",
            "send-reminder": "todo.reminder.due",
            "health": "todo.health.probe",
        }[function]
        base = binary(type_, good)
        body = dumps(good)
        yield f"{function}: no specversion", function, _without(base, "ce-specversion"), body
        for version in ("0.3", "2.0", "", "1", "1.00", "v1.0", "1.0; DROP TABLE items"):
            yield (
                f"{function}: specversion {version!r}",
                function,
                {**base, "ce-specversion": version},
                body,
            )
        for name in ("ce-id", "ce-source", "ce-type"):
            yield f"{function}: no {name}", function, _without(base, name), body
            yield f"{function}: empty {name}", function, {**base, name: ""}, body
        yield f"{function}: id too long", function, {**base, "ce-id": "i" * 257}, body
        yield f"{function}: source too long", function, {**base, "ce-source": "/" * 1025}, body
        yield f"{function}: type too long", function, {**base, "ce-type": "t" * 257}, body
        yield f"{function}: subject too long", function, {**base, "ce-subject": "s" * 1025}, body
        yield f"{function}: unknown type", function, {**base, "ce-type": "todo.task.exploded"}, body
        for injection in INJECTIONS[:8]:
            yield (
                f"{function}: injected type {injection!r}",
                function,
                {**base, "ce-type": injection},
                body,
            )
        yield f"{function}: bad time", function, {**base, "ce-time": "yesterday"}, body
        yield f"{function}: month 13", function, {**base, "ce-time": "2026-13-01T00:00:00Z"}, body
        yield f"{function}: bad attribute name", function, {**base, "ce-bad_name": "x"}, body
        yield f"{function}: dashed attribute name", function, {**base, "ce-x-y": "x"}, body
        yield (
            f"{function}: too many extensions",
            function,
            {**base, **{f"ce-ext{n}": "x" for n in range(33)}},
            body,
        )
        yield f"{function}: long extension", function, {**base, "ce-ext": "x" * 2049}, body
        yield (
            f"{function}: batch",
            function,
            {"content-type": "application/cloudevents-batch+json"},
            b"[]",
        )
        for media in (
            "text/csv",
            "application/xml",
            "multipart/form-data; boundary=x",
            "image/png",
        ):
            yield f"{function}: content type {media}", function, {"content-type": media}, body
        yield (
            f"{function}: plain json, not an event",
            function,
            {"content-type": "application/json"},
            body,
        )
        yield f"{function}: no content type, no event", function, {}, b"hello"
        yield (
            f"{function}: broken structured",
            function,
            *structured_raw(b'{"specversion": "1.0", "id": '),
        )
        yield f"{function}: oversize body", function, base, b" " * (MAX_BODY + 1)
        yield f"{function}: oversize header", function, {**base, "x-padding": "p" * 40_000}, body
        yield (
            f"{function}: many headers",
            function,
            {**base, **{f"x-h{n}": "v" * 400 for n in range(100)}},
            body,
        )

    # -- bodies -------------------------------------------------------------------------
    broken = [
        b'{"user_id":',
        b"[",
        b"nul",
        b"\xff\xfe\xfa",
        b'{"user_id": "u", }',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"\xef\xbb\xbf{}",
    ]
    for n, body in enumerate(broken):
        yield f"broken json {n}", "schedule-next", created, body
    for n, data in enumerate(([], "x", 42, None, True, [good])):
        yield f"data not an object {n}", "schedule-next", created, dumps(data)
    yield "text data for a task", "schedule-next", {**created, "content-type": "text/plain"}, b"hi"
    deep = {"specversion": "1.0", "id": "d", "source": "/hostile", "type": "todo.task.created"}
    yield (
        "structured deep data",
        "schedule-next",
        *structured_raw(
            json.dumps(deep)[:-1].encode() + b', "data": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        ),
    )
    for name, envelope in {
        "structured numeric specversion": {**deep, "specversion": 1.0, "data": good},
        "structured numeric id": {**deep, "id": 7, "data": good},
        "structured bad base64": {**deep, "data_base64": "!!!"},
        "structured base64 not json": {
            **deep,
            "datacontenttype": "application/json",
            "data_base64": base64.b64encode(b"not json").decode(),
        },
        "structured control chars in id": {**deep, "id": "a\r\nb", "data": good},
        "structured nul in source": {**deep, "source": "s\x00", "data": good},
        "structured control chars in subject": {**deep, "subject": "a\x1bb", "data": good},
        "structured string data": {**deep, "data": "x"},
        "structured attribute object": {**deep, "id": {"$ne": 1}, "data": good},
        "structured traceparent object": {**deep, "traceparent": {"a": 1}, "data": good},
        "structured extension list": {**deep, "partitionkey": [1, 2], "data": good},
        "structured extension null": {**deep, "partitionkey": None, "data": good},
        "structured extension float": {**deep, "partitionkey": 1.5, "data": good},
        "structured bad attribute name": {**deep, "Bad-Name": "x", "data": good},
    }.items():
        yield name, "schedule-next", *structured(envelope)

    # -- data fields ---------------------------------------------------------------------
    for path, values in BAD_TASK_FIELDS.items():
        for n, value in enumerate(values):
            data = _set(good, path, value)
            if path == "completed_at":
                yield (
                    f"completed {path} {n}",
                    "complete-task",
                    binary(
                        "todo.task.completed", {**data, "user_id": user, "task_id": f"{user}.h1"}
                    ),
                    dumps(data),
                )
                continue
            yield f"created {path} {n}", "schedule-next", created, dumps(data)
    for path in INJECTABLE:
        for n, injection in enumerate(INJECTIONS):
            data = _set(good, path, injection)
            function = "complete-task" if path == "completed_at" else "schedule-next"
            type_ = "todo.task.completed" if path == "completed_at" else "todo.task.created"
            yield f"injection in {path} {n}", function, binary(type_, data), dumps(data)
    occurrence = {
        "user_id": user,
        "task_id": f"{user}.h1",
        "series_id": f"{user}.h1",
        "occurrence": 0,
        "due_at": "2026-11-24T09:00:00Z",
        "completed_at": "2026-11-24T10:00:00Z",
        "recurrence": {"rule": "FREQ=DAILY"},
    }
    for path, values in OCCURRENCE_BAD.items():
        for n, value in enumerate(values):
            data = _set(occurrence, path, value)
            yield (
                f"occurrence {path} {n}",
                "schedule-next",
                binary("todo.occurrence.requested", data),
                dumps(data),
            )
    for n, value in enumerate(["", "u u", "#system", "x" * 200, 5.5]):
        data = {"user_id": value}
        yield (
            f"reminder.due user {n}",
            "send-reminder",
            binary("todo.reminder.due", data),
            dumps(data),
        )
        data = {"user_id": user, "task_id": value}
        yield (
            f"reminder.due task {n}",
            "send-reminder",
            binary("todo.reminder.due", data),
            dumps(data),
        )
    # The seed's shapes and Dapr's.
    seed = {"event_type": "task.created", "task_id": 1, "user_id": user, "payload": {}}
    for name, data in {
        "seed unknown event_type": {**seed, "event_type": "task.exploded"},
        "seed event_type not a string": {**seed, "event_type": 7},
        "seed payload not an object": {**seed, "payload": [1]},
        "seed bad user": {**seed, "user_id": "a b"},
        "seed bad pattern": {**seed, "payload": {"recurring_pattern": "FREQ=SECONDLY"}},
        "seed bad end date": {
            **seed,
            "payload": {"recurring_pattern": "daily", "recurring_end_date": "someday"},
        },
    }.items():
        yield name, "schedule-next", binary("com.dapr.event.sent", data), dumps(data)
    yield (
        "dapr envelope without seed data",
        "schedule-next",
        binary("com.dapr.event.sent", {"a": 1}),
        dumps({"a": 1}),
    )


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


def structured_raw(body: bytes) -> tuple[dict[str, str], bytes]:
    return {"content-type": "application/cloudevents+json"}, body
