"""Hostile input against the real function processes: a corpus of crafted bad requests
(`hostile.corpus`) and property-based fuzzing (hypothesis) of events and rules.

Every bad request gets a 4xx with a JSON `{"error", "field"}` body, none a 5xx, the p99
answer time is at most 50 ms, and the store is unchanged (a full dump before and after).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from figures import record
from hostile import INJECTIONS, binary, corpus, dumps, task
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from minibroker import percentile
from relstack import FunctionSet

from nextup.functions import ALL

P99_MS = 50.0
FUNCTIONS = tuple(ALL)
FUZZED: dict[str, Counter] = {}  # test -> answers by status, for the figures


class Target:
    """The function set, a kept-alive client per function, and timing of every answer."""

    def __init__(self, fs: FunctionSet) -> None:
        self.fs = fs
        self.clients = {
            name: httpx.Client(base_url=fs.functions[name].url, timeout=30) for name in fs.functions
        }
        self.times: list[float] = []

    def post(self, function: str, headers: dict, body: bytes) -> httpx.Response:
        started = time.perf_counter()
        response = self.clients[function].post("/", headers=headers, content=body)
        self.times.append((time.perf_counter() - started) * 1000)
        return response

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Iterator[Target]:
    with pytest.MonkeyPatch.context() as mp:
        fs = FunctionSet.start("sqlite", tmp_path_factory.mktemp("hostile"), mp, names=FUNCTIONS)
        t = Target(fs)
        try:
            # Something to protect: tasks of two users, with reminders.
            for user in ("victim", "hostile"):
                for n in range(3):
                    data = task(user, f"{user}-own-{n}")
                    response = t.post(
                        "schedule-next",
                        binary("todo.task.created", data, id_=f"{user}-{n}"),
                        dumps(data),
                    )
                    assert response.status_code == 202, response.text
            t.times.clear()
            yield t
        finally:
            t.close()
            fs.stop()


def problems(response: httpx.Response) -> str | None:
    """What is wrong with the answer to a bad request, or None."""
    if not 400 <= response.status_code < 500:
        return f"status {response.status_code}: {response.text[:200]}"
    if response.headers.get("content-type") != "application/json":
        return f"content type {response.headers.get('content-type')}: {response.text[:200]}"
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]}"
    if not isinstance(body, dict) or set(body) != {"error", "field"}:
        return f"body is not {{error, field}}: {body}"
    if not isinstance(body["error"], str) or not body["error"]:
        return f"no error message: {body}"
    return None


def test_a_corpus_of_crafted_bad_requests(target):
    requests = list(corpus("hostile"))
    assert len(requests) >= 200
    before = target.fs.dump()
    failures, statuses = [], Counter()
    target.times.clear()
    for name, function, headers, body in requests:
        response = target.post(function, headers, body)
        statuses[response.status_code] += 1
        problem = problems(response)
        if problem:
            failures.append(f"{name} -> {function}: {problem}")
    times = list(target.times)
    assert failures == [], "\n".join(failures)
    assert target.fs.dump() == before, "a bad request changed the store"
    p99 = percentile(times, 0.99)
    record(
        "hostile corpus",
        requests=len(requests),
        statuses={str(k): v for k, v in sorted(statuses.items())},
        p50_ms=round(percentile(times, 0.5), 2),
        p99_ms=round(p99, 2),
        max_ms=round(max(times), 2),
    )
    assert p99 <= P99_MS, f"p99 {p99:.1f} ms"


def test_headers_beyond_the_http_servers_limit_are_cut_before_the_function(target):
    """Up to about 128 KiB of headers reach the function, which answers 431 (JSON) past
    32 KiB; a header block bigger than the HTTP server (uvicorn) parses never reaches it:
    the server answers a plain-text 400 or resets the connection. No 5xx, nothing stored."""
    before = target.fs.dump()
    data = task("hostile", "hostile-huge")
    outcomes = {}
    for size in (100_000, 300_000, 1_000_000):
        headers = {**binary("todo.task.created", data), "x-padding": "p" * size}
        try:
            response = httpx.post(
                target.fs.functions["schedule-next"].url, headers=headers, content=dumps(data)
            )
        except httpx.TransportError as exc:
            outcomes[size] = type(exc).__name__
            continue
        assert 400 <= response.status_code < 500, response.text
        outcomes[size] = f"{response.status_code} {response.headers.get('content-type')}"
    assert outcomes[100_000] == "431 application/json"
    assert target.fs.dump() == before
    record("hostile oversize headers", outcomes=outcomes)


def test_injection_strings_in_free_text_are_stored_verbatim_and_harmless(target):
    """Titles and event sources are free text: an injection string there is just text."""
    for n, injection in enumerate(INJECTIONS):
        data = {**task("hostile", f"hostile-free-{n}"), "title": injection}
        headers = binary("todo.task.created", data, id_=f"free-{n}", **{"ce-source": f"/x/{n}"})
        response = target.post("schedule-next", headers, dumps(data))
        assert response.status_code == 202, response.text
        stored = target.fs.store.get_task("hostile", f"hostile-free-{n}")
        assert stored.title == injection.strip()
    assert target.fs.store.get_task("victim", "victim-own-0").title == "Water the plants"


# -- property-based fuzzing ----------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
TYPES = st.sampled_from(
    [
        "todo.task.created",
        "todo.task.updated",
        "todo.task.deleted",
        "todo.task.completed",
        "todo.occurrence.requested",
        "todo.reminder.due",
        "todo.health.probe",
        "com.dapr.event.sent",
    ]
)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


def _check_fuzzed(target: Target, function: str, headers: dict, body: bytes) -> httpx.Response:
    before = target.fs.dump()
    response = target.post(function, headers, body)
    FUZZED.setdefault(function_name(), Counter())[response.status_code] += 1
    assert response.status_code < 500, (function, headers, body[:300], response.text)
    if response.status_code >= 400:
        assert problems(response) is None, problems(response)
        assert target.fs.dump() == before, "a refused request changed the store"
    return response


@FUZZ
@given(
    function=st.sampled_from(FUNCTIONS),
    type_=TYPES | st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30),
    attributes=st.dictionaries(
        st.sampled_from(
            ["ce-id", "ce-source", "ce-specversion", "ce-time", "ce-subject", "ce-partitionkey"]
        ),
        st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40),
        max_size=4,
    ),
    data=JSON,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/cloudevents+json", ""]
    ),
)
def test_fuzzed_events_never_get_a_5xx(target, function, type_, attributes, data, content_type):
    headers: dict = {"ce-specversion": "1.0", "ce-id": uuid.uuid4().hex, "ce-source": "/fuzz"}
    headers["ce-type"] = type_
    headers.update(attributes)
    # HTTP trims the whitespace around a header value; a client cannot send it.
    headers = {k: v.strip() for k, v in headers.items()}
    # Header values as UTF-8 bytes: what a hostile client sends, whatever the server reads.
    headers = {
        k: v.encode() if isinstance(v, str) and not v.isascii() else v for k, v in headers.items()
    }
    if any(isinstance(v, str) and not v.isprintable() for v in headers.values()):
        headers = {k: v.encode() if isinstance(v, str) else v for k, v in headers.items()}
    if content_type:
        headers["content-type"] = content_type
    _check_fuzzed(target, function, headers, json.dumps(data).encode())


@FUZZ
@given(
    path=st.sampled_from(
        [
            "user_id",
            "task_id",
            "title",
            "due_at",
            "timezone",
            "recurrence",
            "reminder",
            "notify",
            "recurrence.rule",
            "recurrence.until",
            "recurrence.count",
            "reminder.before",
            "notify.email",
            "notify.webhook",
        ]
    ),
    value=JSON,
)
def test_fuzzed_task_fields_are_refused_cleanly_or_accepted(target, path, value):
    from hostile import _set

    data = _set(task("hostile", f"fz-{uuid.uuid4().hex[:10]}"), path, value)
    headers = binary("todo.task.created", data, id_=uuid.uuid4().hex)
    response = _check_fuzzed(target, "schedule-next", headers, dumps(data))
    if response.status_code >= 400:
        assert response.json()["field"] is not None


FREQS = st.sampled_from(
    ["YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY", "BOGUS"]
)
DAYS = st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU", "1MO", "-1FR", "53SU", "XX"])


@st.composite
def rules(draw) -> str:
    parts = [f"FREQ={draw(FREQS)}"]
    ints = st.integers(min_value=-400, max_value=400)
    options = {
        "INTERVAL": st.integers(min_value=-1, max_value=1200).map(str),
        "COUNT": st.integers(min_value=-1, max_value=200_000).map(str),
        "BYMONTH": st.lists(st.integers(min_value=-1, max_value=13), min_size=1, max_size=4).map(
            lambda v: ",".join(map(str, v))
        ),
        "BYMONTHDAY": st.lists(
            st.integers(min_value=-32, max_value=32), min_size=1, max_size=4
        ).map(lambda v: ",".join(map(str, v))),
        "BYDAY": st.lists(DAYS, min_size=1, max_size=4).map(",".join),
        "BYHOUR": st.lists(st.integers(min_value=-1, max_value=25), min_size=1, max_size=3).map(
            lambda v: ",".join(map(str, v))
        ),
        "BYMINUTE": st.lists(st.integers(min_value=-1, max_value=61), min_size=1, max_size=3).map(
            lambda v: ",".join(map(str, v))
        ),
        "BYSETPOS": st.lists(ints, min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))),
        "BYWEEKNO": st.lists(st.integers(min_value=-54, max_value=54), min_size=1, max_size=3).map(
            lambda v: ",".join(map(str, v))
        ),
        "BYYEARDAY": st.lists(
            st.integers(min_value=-367, max_value=367), min_size=1, max_size=3
        ).map(lambda v: ",".join(map(str, v))),
        "WKST": DAYS,
        "UNTIL": st.sampled_from(["20270101T000000Z", "19000101", "garbage", "20261124"]),
    }
    for name in draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)):
        parts.append(f"{name}={draw(options[name])}")
    return ";".join(parts)


@FUZZ
@given(
    rule=rules(),
    mode=st.sampled_from(["schedule", "completion"]),
    due=st.datetimes(
        min_value=__import__("datetime").datetime(1950, 1, 1),
        max_value=__import__("datetime").datetime(2150, 1, 1),
    ),
    late=st.integers(min_value=0, max_value=10**9),
    occurrence=st.integers(min_value=0, max_value=5000),
)
def test_fuzzed_rules_answer_fast_and_never_5xx(target, rule, mode, due, late, occurrence):
    from datetime import UTC, timedelta

    due_at = due.replace(tzinfo=UTC)
    data = {
        "user_id": "hostile",
        "task_id": "hostile-own-0",
        "series_id": "hostile-own-0",
        "occurrence": occurrence,
        "due_at": due_at.isoformat(),
        "completed_at": (due_at + timedelta(seconds=late)).isoformat(),
        "timezone": "Europe/Berlin",
        "recurrence": {"rule": rule, "mode": mode},
    }
    headers = binary("todo.occurrence.requested", data, id_=uuid.uuid4().hex)
    started = time.perf_counter()
    response = target.post("schedule-next", headers, dumps(data))
    ms = (time.perf_counter() - started) * 1000
    FUZZED.setdefault("rules", Counter())[response.status_code] += 1
    FUZZED.setdefault("rules_ms", Counter())[min(1000, int(ms // 10) * 10)] += 1
    assert response.status_code < 500, (rule, response.text)
    assert ms < 1000, f"{rule}: {ms:.0f} ms"
    if response.status_code >= 400:
        assert problems(response) is None
        assert response.json()["field"].startswith("data."), response.json()


def function_name() -> str:
    import inspect

    for frame in inspect.stack():
        if frame.function.startswith("test_fuzzed"):
            return frame.function.removeprefix("test_fuzzed_")
    return "fuzz"


def test_fuzz_figures(target):
    """Runs last in this module: what the fuzzing above did, for docs/RELIABILITY.md."""
    assert FUZZED, "the fuzz tests ran first"
    figures = {name: {str(k): v for k, v in sorted(c.items())} for name, c in FUZZED.items()}
    record("hostile fuzzing", examples=figures, p99_ms_all=round(percentile(target.times, 0.99), 2))
