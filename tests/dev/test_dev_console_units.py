"""The console's pure parts: the timeline (bound, filters, causal chains), the choice of
dead letters to re-drive, and the dispatcher's ring of attempts with its loopback reader."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from nextup.envelope import make_event, to_binary
from nextup_dev.console import attempts
from nextup_dev.console.redrive import Selection, event_of, newest_per_event, parse_time, select
from nextup_dev.console.timeline import Query, Timeline, event_ref

TRACE = "0af7651916cd43dd8448eb211c80319c"


def attrs(id_: str, type_: str = "todo.task.created", trace: str | None = TRACE, **more) -> dict:
    out = {"specversion": "1.0", "id": id_, "source": "/tests", "type": type_, **more}
    if trace:
        out["traceparent"] = f"00-{trace}-b7ad6b7169203331-01"
    return out


def attempt(event: dict, trigger: str, outcome: str, n: int = 1, reply=None, at=None) -> dict:
    return {
        "seq": n,
        "at": at or 1.0,
        "trigger": trigger,
        "event": event,
        "attempt": n,
        "status": 200 if outcome == "delivered" else 503,
        "ms": 1.0,
        "error": None,
        "body": None,
        "outcome": outcome,
        "retry_in": 0.5 if outcome == "retry" else None,
        "reply": reply,
    }


# The timeline


def test_the_timeline_keeps_only_the_newest_events_and_forgets_their_traces() -> None:
    timeline = Timeline(limit=3)
    for n in range(5):
        timeline.add_event("posted", attrs(f"e{n}", trace=f"{n + 1:032x}"), {"user_id": "ann"})
    assert [e["id"] for e in timeline.query(Query())] == ["e4", "e3", "e2"]
    assert len(timeline.entries) == 3
    assert sorted(timeline.traces) == [f"{n + 1:032x}" for n in (2, 3, 4)]


def test_an_event_posted_twice_is_one_entry_seen_twice() -> None:
    timeline = Timeline()
    timeline.add_event("posted", attrs("e1"), {})
    timeline.add_event("posted", attrs("e1"), {})
    [only] = timeline.query(Query())
    assert only["seen"] == 2


def test_filters_by_type_user_id_and_outcome() -> None:
    timeline = Timeline()
    a = attrs("a-1", trace=None)
    b = attrs("b-2", "todo.task.completed", trace=None)
    timeline.add_event("posted", a, {"user_id": "ann"})
    timeline.add_event("posted", b, {"user_id": "bob"})
    timeline.add_event("unrouted", attrs("c-3", "todo.nobody", trace=None), {"user_id": "ann"})
    timeline.add_attempts([attempt(a, "t1", "retry"), attempt(b, "t2", "delivered")])

    def ids(**query) -> list[str]:
        return [e["id"] for e in timeline.query(Query(**query))]

    assert ids(type="todo.task.completed") == ["b-2"]
    assert ids(type="task") == ["b-2", "a-1"]  # part of the type
    assert ids(user="ann") == ["c-3", "a-1"]
    assert ids(id="b-") == ["b-2"]
    assert ids(outcome="retrying") == ["a-1"]
    assert ids(outcome="delivered") == ["b-2"]
    assert ids(outcome="unrouted") == ["c-3"]
    assert ids(user="ann", outcome="delivered") == []
    timeline.add_attempts([attempt(a, "t1", "dead-lettered", n=2)])
    assert ids(outcome="dead-lettered") == ["a-1"]
    assert timeline.users() == ["ann", "bob"]


def test_an_event_seen_first_through_its_delivery_is_completed_when_it_comes_in() -> None:
    timeline = Timeline()
    event = attrs("late")
    timeline.add_attempts([attempt(event, "t1", "delivered")])
    timeline.add_event("posted", event, {"user_id": "ann"})
    [entry] = timeline.query(Query())
    assert entry["kind"] == "posted" and entry["user"] == "ann" and entry["outcome"] == "delivered"


def test_a_reply_and_what_a_function_emitted_hang_under_the_delivery_that_caused_them() -> None:
    timeline = Timeline(
        subscribers={"complete": "complete-task", "next": "schedule-next", "sweep": "send-reminder"}
    )
    done = attrs("done", "todo.task.completed")
    timeline.add_event("posted", done, {"user_id": "ann"}, at=1.0)
    requested = attrs("req", "todo.occurrence.requested")
    reply = {"attributes": requested, "data": {"user_id": "ann"}}
    timeline.add_attempts([attempt(done, "complete", "delivered", reply=reply, at=2.0)])
    scheduled = {"attributes": attrs("sched", "todo.task.scheduled"), "data": {"task_id": "t@2"}}
    timeline.add_attempts([attempt(requested, "next", "delivered", n=2, reply=scheduled, at=3.0)])
    # Another event of the same trace, emitted by a function no delivery here reached.
    timeline.add_event("emitted", attrs("odd", "todo.other"), {}, at=4.0, via="elsewhere")

    chain = timeline.chain(event_ref("/tests", "sched"))
    assert chain is not None and chain["trace"] == TRACE
    [root, other] = chain["roots"][0], chain["roots"][0]["children"]
    assert root["id"] == "done"
    [delivery] = root["deliveries"]
    assert delivery["trigger"] == "complete" and delivery["function"] == "complete-task"
    [reply_node] = delivery["produced"]
    assert reply_node["id"] == "req" and reply_node["kind"] == "reply"
    [next_delivery] = reply_node["deliveries"]
    [scheduled_node] = next_delivery["produced"]
    assert scheduled_node["id"] == "sched" and scheduled_node["selected"]
    assert [o["id"] for o in other] == ["odd"]  # in the trace, cause unknown: under the root


def test_a_ticks_chain_ends_in_the_mail_its_reminder_sent() -> None:
    timeline = Timeline(subscribers={"sweep": "send-reminder"})
    tick = attrs("tick", "dev.knative.sources.ping")
    timeline.add_event("tick", tick, {"sweep": "reminders"}, at=1.0)
    timeline.add_attempts([attempt(tick, "sweep", "delivered", at=2.0)])
    sent = attrs("sent", "todo.reminder.sent")
    data = {"user_id": "ann", "task_id": "call", "channel": "email"}
    timeline.add_event("emitted", sent, data, at=1.5, via="send-reminder")
    timeline.add_mail({"name": "m.eml", "task": "call", "to": "ann@example.com"})
    timeline.add_mail({"name": "other.eml", "task": "other"})

    chain = timeline.chain(event_ref("/tests", "tick"))
    [root] = chain["roots"]
    [sweep] = root["deliveries"]
    [sent_node] = sweep["produced"]
    assert sent_node["id"] == "sent"
    assert [m["name"] for m in sent_node["mails"]] == ["m.eml"]


def test_an_event_no_trigger_takes_is_unrouted_not_pending() -> None:
    timeline = Timeline(routed=lambda attributes: attributes["type"] != "todo.task.scheduled")
    timeline.add_event("reply", attrs("s", "todo.task.scheduled"), {})
    timeline.add_event("posted", attrs("p"), {})
    assert [e["outcome"] for e in timeline.query(Query())] == ["pending", "unrouted"]


# Re-drive selection


def letter(id_: str, type_: str = "todo.task.created", status: int = 400, at: float = 100.0):
    attributes = attrs(id_, type_, knativeerrorcode=str(status), knativeerrordest="http://x/")
    attributes["knativeerrordata"] = "e30="
    return {
        "at": at,
        "error": {"status": status},
        "attributes": attributes,
        "data": {"user_id": "ann"},
        "file": f"{id_}.json",
    }


LETTERS = [
    letter("a", at=100.0),
    letter("b", "todo.task.completed", 404, at=200.0),
    letter("c", status=503, at=300.0),
]


@pytest.mark.parametrize(
    ("selection", "chosen"),
    [
        (Selection(), []),  # nothing said, nothing chosen
        (Selection(all=True), ["a", "b", "c"]),
        (Selection(id="b"), ["b"]),
        (Selection(type="todo.task.created"), ["a", "c"]),
        (Selection(status=503), ["c"]),
        (Selection(since=150.0), ["b", "c"]),
        (Selection(since=150.0, until=250.0), ["b"]),
        (Selection(type="todo.task.created", since=150.0), ["c"]),
        (Selection(id="nope"), []),
    ],
)
def test_redrive_selects_by_id_type_status_and_time(selection: Selection, chosen) -> None:
    assert [x["attributes"]["id"] for x in select(LETTERS, selection)] == chosen


def test_a_redriven_event_is_the_original_without_the_error_extensions() -> None:
    event = event_of(LETTERS[0])
    attributes = event.get_attributes()
    assert attributes["id"] == "a" and attributes["source"] == "/tests"
    assert attributes["traceparent"].startswith(f"00-{TRACE}")
    assert not [name for name in attributes if name.startswith("knativeerror")]
    assert event.data == {"user_id": "ann"}
    assert event_of(LETTERS[0], {"fixed": True}).data == {"fixed": True}


def test_an_event_dead_lettered_twice_is_redriven_once_its_newest_letter() -> None:
    again = {**letter("a", status=503, at=400.0), "file": "a-again.json"}
    newest_first = [again, *reversed(LETTERS)]
    assert [x["file"] for x in newest_per_event(newest_first)] == [
        "a-again.json",
        "c.json",
        "b.json",
    ]


def test_times_are_iso_8601_or_epoch_seconds() -> None:
    assert parse_time("2026-12-01T08:00:00Z") == 1796112000.0
    assert parse_time("1796112000") == 1796112000.0
    with pytest.raises(ValueError):
        parse_time("yesterday")


# The dispatcher's ring


@dataclass
class Answer:
    status: int | None = 200
    ms: float = 1.5
    error: str | None = None
    body: bytes = b'{"ok": true}'
    headers: dict = field(default_factory=dict)


def test_the_ring_is_bounded_and_read_from_where_the_reader_left_off() -> None:
    ring = attempts.AttemptLog(limit=3)
    for n in range(5):
        ring.add("t", {"id": f"e{n}"}, 1, Answer(), "delivered")
    found = ring.since(0)
    assert [a["event"]["id"] for a in found] == ["e2", "e3", "e4"]
    assert [a["event"]["id"] for a in ring.since(found[1]["seq"])] == ["e4"]
    assert found[0]["body"] == {"ok": True}
    assert found[0]["reply"] is None


def test_the_ring_is_read_over_loopback_with_the_reply_it_published() -> None:
    async def run() -> list[dict]:
        ring = attempts.AttemptLog()
        reply = make_event("todo.task.scheduled", "/f", {"task_id": "t"}, id_="r1")
        headers, body = to_binary(reply)
        ring.add("t", {"id": "e1"}, 1, Answer(body=body, headers=headers), "delivered", reply=True)
        ring.add("t", {"id": "e2"}, 1, Answer(503, error="boom"), "retry", 0.5)
        from nextup_dev.stack import free_port

        port = free_port()
        server = await attempts.serve(ring, port)
        try:
            everything = await attempts.fetch(port, 0)
            after = await attempts.fetch(port, everything[0]["seq"])
        finally:
            server.close()
            await server.wait_closed()
        gone = await attempts.fetch(port, 0)  # nobody there: nothing, no error
        return [everything, after, gone]

    everything, after, gone = asyncio.run(run())
    assert [a["event"]["id"] for a in everything] == ["e1", "e2"]
    assert everything[0]["reply"]["attributes"]["id"] == "r1"
    assert everything[0]["reply"]["data"] == {"task_id": "t"}
    assert after[0]["outcome"] == "retry" and after[0]["retry_in"] == 0.5
    assert after[0]["error"] == "boom"
    assert gone == []


def test_a_triggers_retry_schedule_in_words() -> None:
    from datetime import timedelta

    from nextup_dev.console.api import retry_schedule
    from nextup_dev.manifests import Delivery, Destination

    sink = Destination(uri="http://dead/")
    ten = Delivery(retry=10, backoff_delay=timedelta(seconds=0.5), dead_letter=sink)
    assert retry_schedule(ten) == (
        "10 retries after 0.5, 1, 2, 4, 8, 16, ... s (exponential), then dead-lettered"
    )
    linear = Delivery(retry=3, backoff_policy="linear", backoff_delay=timedelta(seconds=1))
    assert retry_schedule(linear) == "3 retries after 1, 2, 3 s (linear), then dropped"
    assert retry_schedule(Delivery()) == "no retries, then dropped"


def test_a_quiet_clock_ticks_once_a_year_from_a_checkout_or_the_declarations(tmp_path) -> None:
    from devstack import ROOT

    from nextup_dev.console.screenshots import YEARLY, quiet_clock
    from nextup_dev.manifests import load

    for source, name in ((ROOT / "eventing" / "base", "copied"), (None, "rendered")):
        eventing = load(quiet_clock(source, tmp_path / name))
        names = sorted(p.name for p in eventing.ping_sources)
        assert names == ["health-canary", "reminder-sweep"]
        assert {p.schedule for p in eventing.ping_sources} == {YEARLY}
        assert len(eventing.triggers) >= 12


def test_a_dispatcher_whose_console_port_is_taken_still_dispatches(tmp_path) -> None:
    """The console's port taken by someone else: the dispatcher says so in its log and
    goes on to Kafka (it would otherwise exit, be restarted, and exit again)."""
    import socket
    import subprocess
    import sys

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        # No Kafka answers at port 9: past the console, the dispatcher fails on that.
        argv = ["--kafka", "127.0.0.1:9", "--console-port", str(port)]
        process = subprocess.Popen(
            [sys.executable, "-m", "nextup_dev.dispatcher", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = process.stderr.readline()
            while line and "console" not in line:
                line = process.stderr.readline()
            assert f"console: cannot listen on 127.0.0.1:{port}" in line
            rest = process.communicate(timeout=60)[1]
            assert "Kafka" in rest or "kafka" in rest, "it went on, to Kafka"
            assert "Address already in use" not in rest
        finally:
            process.terminate()
            process.wait(30)
    finally:
        taken.close()
