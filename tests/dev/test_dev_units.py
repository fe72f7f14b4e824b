"""The pure parts of `nextup dev`: the filter dialect, delivery rules, offsets, schedules,
the Kafka binding, the manifests (validated against the real CRD schemas) and the board."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness import ROOT
from nextup.envelope import make_event
from nextup.functions import ALL
from nextup_dev import binding, deadletters, delivery, filters, manifests, schedule
from nextup_dev.manifests import Delivery, ManifestError
from nextup_dev.offsets import PartitionOffsets
from nextup_dev.status import Board, Flow, Tally, describe

SCHEMAS = ROOT.parent / "shared" / "schemas" / "knative-v1.22"
EVENTING = ROOT / "eventing" / "base"

# Filters

EVENT = {"type": "todo.task.created", "source": "/apis/v1/namespaces/nextup/x", "subject": "t1"}


@pytest.mark.parametrize(
    ("attributes", "matches"),
    [
        ({}, True),
        ({"type": "todo.task.created"}, True),
        ({"type": "todo.task.deleted"}, False),
        ({"type": "todo.task.created", "subject": "t1"}, True),
        ({"type": "todo.task.created", "subject": "t2"}, False),
        ({"subject": ""}, True),  # empty: any value, but the attribute must be there
        ({"partitionkey": ""}, False),
        ({"TYPE": "todo.task.created"}, True),  # attribute names are case-insensitive
    ],
)
def test_filter_attributes_is_exact_with_empty_meaning_any(attributes, matches):
    predicate = filters.compile_trigger_filter({"attributes": attributes}, None)
    assert predicate(EVENT) is matches


@pytest.mark.parametrize(
    ("expression", "matches"),
    [
        ({"exact": {"type": "todo.task.created"}}, True),
        ({"exact": {"type": "todo.task"}}, False),
        ({"exact": {"type": "todo.task.created", "subject": "t2"}}, False),
        ({"prefix": {"type": "todo.task."}}, True),
        ({"prefix": {"type": "todo.reminder."}}, False),
        ({"suffix": {"source": "/x"}}, True),
        ({"suffix": {"missing": "x"}}, False),
        ({"not": {"prefix": {"type": "dev.knative."}}}, True),
        ({"all": [{"prefix": {"type": "todo."}}, {"exact": {"subject": "t1"}}]}, True),
        ({"all": [{"prefix": {"type": "todo."}}, {"exact": {"subject": "t9"}}]}, False),
        ({"any": [{"exact": {"type": "x"}}, {"suffix": {"type": ".created"}}]}, True),
        ({"any": [{"exact": {"type": "x"}}, {"exact": {"type": "y"}}]}, False),
        ({"not": {"any": [{"exact": {"type": "x"}}, {"not": {"exact": {"subject": "t1"}}}]}}, True),
    ],
)
def test_filters_dialect(expression, matches):
    assert filters.compile_trigger_filter(None, [expression])(EVENT) is matches


def test_filters_are_anded_and_override_filter_attributes():
    predicate = filters.compile_trigger_filter(
        {"attributes": {"type": "something.else"}},
        [{"prefix": {"type": "todo."}}, {"exact": {"subject": "t1"}}],
    )
    assert predicate(EVENT)
    assert not predicate({**EVENT, "subject": "t2"})


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"cesql": "type = 'x'"}, "cesql"),
        ({"exact": {"type": ""}}, "non-empty"),
        ({"exact": {}}, "map"),
        ({"any": []}, "non-empty list"),
        ({"exact": {"type": "x"}, "prefix": {"type": "y"}}, "exactly one"),
        ({"regex": {"type": "x"}}, "exactly one"),
    ],
)
def test_filters_refuse_what_they_cannot_evaluate_with_a_clear_message(expression, message):
    with pytest.raises(ValueError, match=message):
        filters.compile_trigger_filter(None, [expression])


# Delivery rules


def test_backoff_linear_and_exponential():
    exponential = Delivery(
        retry=10, backoff_policy="exponential", backoff_delay=timedelta(seconds=0.5)
    )
    assert [delivery.backoff(exponential, n).total_seconds() for n in (1, 2, 3, 4)] == [
        0.5,
        1,
        2,
        4,
    ]
    linear = Delivery(retry=3, backoff_policy="linear", backoff_delay=timedelta(seconds=0.2))
    assert [delivery.backoff(linear, n).total_seconds() for n in (1, 2, 3)] == [
        0.2,
        0.4,
        0.6,
    ]
    with pytest.raises(ValueError):
        delivery.backoff(linear, 0)


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        *[(status, True) for status in (None, 500, 503, 404, 408, 409, 429)],
        *[(status, False) for status in (400, 403, 413, 415, 422)],
    ],
)
def test_what_is_retried(status, retried):
    assert delivery.retryable(status) is retried


def test_error_extensions_cut_the_body_at_1024_bytes():
    body = b"x" * 3000
    extensions = delivery.error_extensions("http://f/", 400, body)
    assert extensions["knativeerrordest"] == "http://f/"
    assert extensions["knativeerrorcode"] == "400"
    assert base64.b64decode(extensions["knativeerrordata"]) == b"x" * 1024
    assert delivery.error_extensions("http://f/", None, b"") == {"knativeerrordest": "http://f/"}


def test_attempt_timeout():
    assert delivery.attempt_timeout(Delivery(timeout=timedelta(seconds=30))) == 30
    assert delivery.attempt_timeout(Delivery(), default=7) == 7


# Offsets


def test_offsets_commit_only_below_the_lowest_event_in_flight():
    offsets = PartitionOffsets()
    assert offsets.committable() is None
    for offset in (10, 11, 12, 13):
        offsets.started(offset)
    assert offsets.committable() == 10
    offsets.finished(12)
    offsets.finished(11)
    assert offsets.committable() == 10, "10 is still in flight: a crash must redeliver it"
    offsets.finished(10)
    assert offsets.committable() == 13
    offsets.committed(13)
    assert offsets.committable() is None
    offsets.finished(13)
    assert offsets.committable() == 14
    assert offsets.in_flight == 0
    with pytest.raises(ValueError):
        offsets.started(5)


# Schedules


def test_next_tick_follows_cron_in_its_time_zone():
    at = datetime(2026, 3, 28, 12, 0, 30, tzinfo=UTC)
    assert schedule.next_tick("* * * * *", "Etc/UTC", at) == datetime(
        2026, 3, 28, 12, 1, tzinfo=UTC
    )
    assert schedule.next_tick("*/5 * * * *", "UTC", at) == datetime(2026, 3, 28, 12, 5, tzinfo=UTC)
    # 09:00 in New York is 13:00 UTC in summer time, 14:00 in winter.
    assert schedule.next_tick("0 9 * * *", "America/New_York", at) == datetime(
        2026, 3, 28, 13, 0, tzinfo=UTC
    )
    winter = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    assert schedule.next_tick("0 9 * * *", "America/New_York", winter) == datetime(
        2026, 1, 10, 14, 0, tzinfo=UTC
    )
    # A CRON_TZ prefix wins over the timezone field, as in robfig/cron.
    assert schedule.next_tick("CRON_TZ=Europe/Berlin 0 9 * * *", "UTC", at) == datetime(
        2026, 3, 29, 7, 0, tzinfo=UTC
    )
    assert schedule.next_tick("@hourly", "UTC", at) == datetime(2026, 3, 28, 13, 0, tzinfo=UTC)


def test_bad_schedules_and_zones_are_refused_by_name():
    source = manifests.PingSource(
        "nextup", "p", "61 * * * *", "UTC", manifests.Destination(uri="http://x")
    )
    with pytest.raises(ValueError, match="PingSource p"):
        schedule.check(source)
    with pytest.raises(ValueError, match="time zone"):
        schedule.next_tick("* * * * *", "Mars/Olympus", datetime.now(UTC))


def test_a_tick_is_a_ping_event_with_the_sources_data():
    eventing = manifests.load(EVENTING)
    sweep = next(p for p in eventing.ping_sources if p.name == "reminder-sweep")
    headers, body = schedule.tick_request(sweep, datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    assert headers["ce-type"] == "dev.knative.sources.ping"
    assert headers["ce-source"] == "/apis/v1/namespaces/nextup/pingsources/reminder-sweep"
    assert headers["ce-time"] == "2026-11-24T09:00:00Z"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"sweep": "reminders"}


# The Kafka binding


def test_an_event_becomes_a_binary_record_keyed_by_partitionkey_or_user():
    event = make_event(
        "todo.task.created", "/s", {"user_id": "ann", "n": 1}, id_="e1", partition_key="k1"
    )
    record = binding.record_from_event(event)
    headers = dict(record.headers)
    assert record.key == b"k1"
    assert headers["ce_id"] == b"e1" and headers["ce_type"] == b"todo.task.created"
    assert headers["content-type"] == b"application/json"
    assert json.loads(record.value) == {"user_id": "ann", "n": 1}
    unkeyed = make_event("todo.task.created", "/s", {"user_id": "bob"}, id_="e2")
    assert binding.record_from_event(unkeyed).key == b"bob"
    nobody = make_event("todo.health.probe", "/s", {}, id_="e3")
    assert binding.record_from_event(nobody).key is None


def test_a_record_is_delivered_as_binary_mode_http_and_filtered_on_its_attributes():
    record = binding.record_from_event(make_event("t", "/s", {"a": 1}, id_="e1", subject="x"))
    assert binding.attributes(record.headers)["subject"] == "x"
    assert binding.attributes(record.headers)["datacontenttype"] == "application/json"
    http = binding.http_headers(record.headers)
    assert http["ce-id"] == "e1" and http["content-type"] == "application/json"
    marked = binding.with_extensions(record.headers, {"knativeerrorcode": "400", "id": "e9"})
    assert binding.attributes(marked)["knativeerrorcode"] == "400"
    assert binding.attributes(marked)["id"] == "e9"
    assert [name for name, _ in marked].count("ce_id") == 1


def test_a_dead_letter_document_decodes_the_error():
    headers = binding.with_extensions(
        binding.record_from_event(make_event("t", "/s", {"a": 1}, id_="e1")).headers,
        delivery.error_extensions("http://f/", 400, b'{"error": "no"}'),
    )
    doc = deadletters.document("dl", 2, 7, headers, b'{"a": 1}')
    assert doc["error"] == {"destination": "http://f/", "status": 400, "body": {"error": "no"}}
    assert doc["data"] == {"a": 1}
    assert doc["kafka"] == {"topic": "dl", "partition": 2, "offset": 7}


# The manifests


def _schema(filename: str, kind: str) -> dict:
    for doc in yaml.safe_load_all((SCHEMAS / filename).read_text()):
        if (
            doc
            and doc.get("kind") == "CustomResourceDefinition"
            and doc["spec"]["names"]["kind"] == kind
        ):
            version = next(v for v in doc["spec"]["versions"] if v.get("served", True))
            return version["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no CRD for {kind} in {filename}")


CRDS = {
    "Broker": "eventing-broker.yaml",
    "Trigger": "eventing-trigger.yaml",
    "PingSource": "eventing-pingsource.yaml",
    "KafkaSink": "kafka-sink.yaml",
}


def test_the_eventing_manifests_are_valid_against_the_knative_crds():
    kinds = set()
    for path in manifests.resource_files(EVENTING):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in CRDS:
                jsonschema.validate(doc, _schema(CRDS[doc["kind"]], doc["kind"]))
                kinds.add(doc["kind"])
    assert kinds == set(CRDS)


def test_the_manifests_wire_every_consumed_type_to_its_function():
    eventing = manifests.load(EVENTING)
    [broker] = eventing.brokers
    assert broker.topic == "knative-broker-nextup-nextup" and broker.partitions == 10
    assert set(eventing.services()) == set(ALL)
    for trigger in eventing.triggers:
        assert trigger.consumer_group == f"knative-trigger-nextup-{trigger.name}"
        assert trigger.delivery.retry == 10 and trigger.delivery.timeout == timedelta(seconds=30)
        assert trigger.delivery.dead_letter.ref.name == "nextup-dead-letters"
    ordered = {t.name for t in eventing.triggers if t.ordered}
    assert ordered == {"schedule-next-task-updated"}
    assert {p.name: p.schedule for p in eventing.ping_sources} == {
        "reminder-sweep": "* * * * *",
        "health-canary": "*/5 * * * *",
    }


BROKER = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Broker",
    "metadata": {"name": "b", "namespace": "n"},
    "spec": {"delivery": {"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT1S"}},
}


def _trigger(**spec) -> dict:
    return {
        "kind": "Trigger",
        "metadata": {"name": "t", "namespace": "n"},
        "spec": {"broker": "b", "subscriber": {"uri": "http://x/"}, **spec},
    }


def test_a_trigger_without_delivery_takes_its_brokers():
    eventing = manifests.parse([BROKER, _trigger()])
    assert eventing.triggers[0].delivery == Delivery(
        retry=2, backoff_policy="linear", backoff_delay=timedelta(seconds=1)
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_trigger(filters=[{"cesql": "type = 'x'"}]), "cesql"),
        (_trigger(broker="nope"), "no Broker n/nope"),
        (_trigger(delivery={"backoffDelay": "half a second"}), "ISO 8601"),
        (_trigger(delivery={"backoffPolicy": "random"}), "linear or exponential"),
        (_trigger(subscriber=None), "subscriber is required"),
        (
            _trigger(delivery={"deadLetterSink": {"ref": {"kind": "KafkaSink", "name": "gone"}}}),
            "no KafkaSink n/gone",
        ),
    ],
)
def test_manifests_nextup_dev_cannot_run_are_refused_naming_the_object(doc, message):
    with pytest.raises(ManifestError, match=message):
        manifests.parse([BROKER, doc])


def test_the_cli_refuses_a_cesql_trigger_before_starting_anything(tmp_path: Path):
    import subprocess
    import sys

    (tmp_path / "all.yaml").write_text(
        yaml.safe_dump_all([BROKER, _trigger(filters=[{"cesql": "x"}])])
    )
    out = subprocess.run(
        [sys.executable, "-m", "nextup.cli", "dev", "--eventing", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 1
    assert "Trigger n/t: filters: cesql" in out.stderr and "not supported" in out.stderr


# The board


def test_flows_travel_as_json_lines_and_add_up_per_trigger():
    flows = [
        Flow("posted", type="t", id="1"),
        Flow("tick", type="dev.knative.sources.ping", id="9"),
        Flow("matched", "tr", "t", "1"),
        Flow("retried", "tr", "t", "1", 503, "retry 1/10 in 0.5 s"),
        Flow("delivered", "tr", "t", "1", 202, ms=3.2),
        Flow("reply", "tr", "r", "2"),
        Flow("dead-lettered", "tr", "x", "3", 400, "bad -> dlq"),
        Flow("unrouted", type="nobody.wants.this", id="4"),
    ]
    board = Board({"tr": "topic-a", "other": "topic-a"})
    for flow in flows:
        again = Flow.decode(flow.encode())
        assert again == flow
        board.record(again)
    # Committed levels come from the dispatcher's tally lines.
    tally = Tally()
    tally.level("tr", 4)
    tally.level("other", 3)
    board.add(Tally.decode(tally.flush()))
    snapshot = board.snapshot({"topic-a": 4})
    assert snapshot["events"] == {
        "posted": 1,
        "ticks": 1,
        "emitted": 0,
        "unrouted": 1,
        "replies": 1,
    }
    assert snapshot["records"] == 4
    assert snapshot["triggers"]["tr"] == {
        "matched": 1,
        "delivered": 1,
        "retried": 1,
        "dead_lettered": 1,
        "dropped": 0,
        "replies": 1,
        "committed": 4,
    }
    # `other` has not committed the fourth record: not drained until it has.
    assert snapshot["drained"] is False
    tally.level("other", 4)
    board.add(Tally.decode(tally.flush()))
    assert board.snapshot({"topic-a": 4})["drained"] is True
    # A record Kafka holds that no count knows of (a produce retried inside the client)
    # keeps it undrained: the records come from Kafka, not from our counts.
    assert board.snapshot({"topic-a": 5})["drained"] is False
    assert "drained" not in board.snapshot()  # without Kafka's answer it cannot say
    table = board.table()
    assert "\ntr " in table and "(1 more triggers, nothing matched yet)" in table
    header = table.splitlines()[1].split()
    assert header == [
        "trigger",
        "matched",
        "delivered",
        "retried",
        "dead-lettered",
        "dropped",
        "replies",
    ]
    assert table.splitlines()[0] == (
        "events onto the broker: posted 1, ticks 1, emitted 0, unrouted 1"
    )
    assert "-> 503" in describe(flows[3]) and "retry 1/10" in describe(flows[3])
    assert Flow.decode("a line that is not JSON") is None


def test_the_functions_never_import_the_local_runtime():
    """A function's cold start must not pay for aiokafka, aiosmtpd or YAML."""
    import subprocess
    import sys

    code = (
        "import runpy, sys\n"
        "for name in ('complete-task', 'schedule-next', 'send-reminder', 'health'):\n"
        f"    runpy.run_path(r'{ROOT}/functions/' + name + '/main.py')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('aiokafka', 'aiosmtpd', 'yaml', 'croniter') or m.startswith('nextup_dev')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_taken_port_is_one_clear_line_that_suggests_another_and_nothing_else(tmp_path: Path):
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "nextup.cli", "dev", "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert f"--port {port + 1}" in out.stderr and "make dev ARGS=" in out.stderr
    assert "trigger" not in out.stdout and "events onto the broker" not in out.stdout, out.stdout


def test_the_terminal_shows_what_must_not_be_missed_even_quiet_and_logs_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import io
    import logging

    from nextup_dev.terminal import Terminal

    out = io.StringIO()
    terminal = Terminal(out, quiet=True)
    with caplog.at_level(logging.INFO, logger="nextup.dev"):
        terminal.happened(Flow("delivered", "t", "todo.task.created", "e1", 202))
        terminal.happened(Flow("dead-lettered", "t", "todo.task.created", "e2", 400))
        terminal.happened(Flow("matched", "t", "todo.task.created", "e3"))
        terminal.event_in(Flow("posted", None, "todo.task.created", "e4"))
        terminal.event_in(Flow("unrouted", None, "todo.nothing", "e5"))
    shown = out.getvalue()
    assert "e2" in shown and "e5" in shown  # failed for good; goes nowhere
    assert "e1" not in shown and "e4" not in shown  # held back by --quiet
    logged = caplog.text
    assert all(f"e{n}" in logged for n in (1, 2, 4, 5))
    assert "e3" not in logged  # a match is counted, never a line
