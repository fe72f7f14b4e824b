"""The kind cluster's dead letters go through the same `nextup deadletters` commands as
nextup dev's: `--records` reads what kafka-console-consumer prints (infra/kind/dead-letters.sh
pipes it in), the console's selection chooses, and a re-drive posts real events to a real
HTTP server."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import ROOT, tool

from harness import HttpRecorder
from nextup import cli
from nextup_dev.console import records
from nextup_dev.deadletters import document

SCRIPT = ROOT / "infra" / "kind" / "dead-letters.sh"
ANSWER = {"error": "data.task_id: Field required", "field": "data.task_id"}
DATA = '{"user_id": "u1", "title": "Water the plants"}'
AT = 1_764_576_000_000  # 2025-12-01T08:00:00Z, in milliseconds


def line(
    id_: str = "e-1",
    type_: str = "todo.task.created",
    status: int = 400,
    at: int | None = None,
    offset: int = 0,
    data: str = DATA,
) -> str:
    """A record as the consumer prints it (with --property print.timestamp etc. when `at`)."""
    prefix = "" if at is None else f"CreateTime:{at}\tPartition:0\tOffset:{offset}\t"
    answer = base64.b64encode(json.dumps(ANSWER).encode()).decode()
    return (
        f"{prefix}ce_specversion:1.0|ce_id:{id_}|ce_source:/todo/app|ce_type:{type_}"
        "|ce_time:2026-11-24T09:00:00Z|content-type:application/json"
        "|ce_knativeerrordest:http://schedule-next.nextup.svc.cluster.local"
        f"|ce_knativeerrorcode:{status}|ce_knativeerrordata:{answer}\t{data}\n"
    )


LINE = line()


def test_a_record_line_becomes_the_event_and_its_error() -> None:
    letter = records.parse(LINE)
    attributes = letter["attributes"]
    assert attributes["time"] == "2026-11-24T09:00:00Z"  # colons in values survive
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["type"] == "todo.task.created"
    assert letter["data"] == json.loads(DATA)
    assert letter["error"] == {
        "destination": "http://schedule-next.nextup.svc.cluster.local",
        "status": 400,
        "body": ANSWER,
    }
    assert letter["at"] is None and letter["kafka"]["offset"] is None


def test_the_same_decoder_as_the_dev_mirror() -> None:
    """A line and the record it prints make the same document: one decoder."""
    letter = records.parse(line(at=AT, offset=7), topic="dl")
    head, _, data = LINE.rstrip("\n").partition("\t")
    headers = [(h.partition(":")[0], h.partition(":")[2].encode()) for h in head.split("|")]
    assert letter == document("dl", 0, 7, headers, data.encode(), AT)


def test_timestamp_partition_and_offset_are_read() -> None:
    letter = records.parse(line(at=AT, offset=12))
    assert letter["at"] == AT / 1000
    assert letter["kafka"] == {"topic": None, "partition": 0, "offset": 12}
    assert letter["data"] == json.loads(DATA)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Processed a total of 3 messages\n",
        "ce_id:1|ce_type:x\t{}\n",
        "no tab at all\n",
        "CreateTime:1\tPartition:0\tOffset:3\tNO_HEADERS\t{}\n",
        "CreateTime:1\tPartition:0\n",
    ],
)
def test_lines_that_are_not_events_are_skipped(text: str) -> None:
    assert records.parse(text) is None


def test_an_error_answer_that_is_not_base64_is_kept_as_it_came() -> None:
    letter = records.parse(LINE.replace("ce_knativeerrordata:", "ce_knativeerrordata:not b64!"))
    assert str(letter["error"]["body"]).startswith("not b64!")


def test_read_lists_newest_first() -> None:
    letters = records.read(
        [line("old", at=AT, offset=0), "noise\n", line("new", at=AT + 5000, offset=1)]
    )
    assert [letter["attributes"]["id"] for letter in letters] == ["new", "old"]
    untimed = records.read([line("e-1"), line("e-2")])
    assert [letter["attributes"]["id"] for letter in untimed] == ["e-1", "e-2"]  # topic order


def test_the_request_is_the_original_event_in_binary_mode() -> None:
    headers, body = records.http_request(records.parse(LINE))
    assert headers["ce-id"] == "e-1" and headers["ce-source"] == "/todo/app"
    assert headers["ce-type"] == "todo.task.created"
    assert headers["content-type"] == "application/json"
    assert not [name for name in headers if name.startswith("ce-knativeerror")]
    assert json.loads(body) == json.loads(DATA)
    _, fixed = records.http_request(records.parse(LINE), {"user_id": "u1", "task_id": "t"})
    assert json.loads(fixed) == {"user_id": "u1", "task_id": "t"}
    text = LINE.replace("application/json", "text/plain").replace(DATA, "plain words")
    headers, body = records.http_request(records.parse(text))
    assert headers["content-type"] == "text/plain" and body == b"plain words"


# The commands


@pytest.fixture
def consumed(tmp_path: Path) -> Path:
    """What the consumer printed: three events (e-2 dead-lettered twice), and its notes."""
    path = tmp_path / "records.txt"
    path.write_text(
        line("e-1", at=AT, offset=0)
        + line("e-2", type_="todo.task.completed", status=422, at=AT + 60_000, offset=1)
        + line("e-3", status=500, at=AT + 120_000, offset=2)
        + line("e-2", type_="todo.task.completed", status=422, at=AT + 180_000, offset=3)
        + "Processed a total of 4 messages\n"
    )
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["deadletters", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def seconds(ms: int) -> str:
    return f"{ms / 1000:.0f}"  # epoch seconds, which --since and --until take besides ISO 8601


def test_list_reads_records_and_selects(consumed: Path, capsys) -> None:
    code, out, _ = run(capsys, "list", "--records", str(consumed), "--json")
    assert code == 0
    ids = [letter["attributes"]["id"] for letter in json.loads(out)]
    assert ids == ["e-2", "e-3", "e-2", "e-1"]  # newest first, every record
    code, out, _ = run(capsys, "list", "--records", str(consumed))
    assert code == 0
    [first, *_] = out.splitlines()
    assert "422  todo.task.completed  id=e-2  data.task_id: Field required" in first

    for options, expected in [
        (["--type", "todo.task.created"], ["e-3", "e-1"]),
        (["--status", "500"], ["e-3"]),
        (["--id", "e-1"], ["e-1"]),
        (["--since", seconds(AT + 60_000), "--until", seconds(AT + 120_000)], ["e-3", "e-2"]),
        (["--all"], ["e-2", "e-3", "e-2", "e-1"]),
    ]:
        code, out, _ = run(capsys, "list", "--records", str(consumed), "--json", *options)
        assert code == 0
        assert [letter["attributes"]["id"] for letter in json.loads(out)] == expected, options


def test_dry_run_says_where_each_would_go_and_that_no_receipt_was_checked(
    consumed: Path, capsys
) -> None:
    with HttpRecorder() as broker:
        url = broker.url + "/nextup/nextup"
        code, out, _ = run(
            capsys, "redrive", "--records", str(consumed), "--to", url, "--all", "--dry-run"
        )
        assert code == 0, out
        lines = out.splitlines()
        assert len(lines) == 3  # e-2 once: its newest letter
        for text in lines:
            assert text.startswith("would re-drive  todo.task.")
            assert f"to {url}; receipt not checked" in text
        code, out, _ = run(
            capsys,
            "redrive",
            "--records",
            str(consumed),
            "--to",
            url,
            "--all",
            "--status",
            "422",
            "--dry-run",
        )
        assert code == 0 and out.count("\n") == 1 and "id=e-2" in out
        assert broker.requests == []


def test_redrive_posts_each_chosen_event_and_reports_the_answers(consumed: Path, capsys) -> None:
    with HttpRecorder(respond=lambda r: (202, {}, b"")) as broker:
        url = broker.url + "/nextup/nextup"
        code, out, _ = run(
            capsys,
            "redrive",
            "--records",
            str(consumed),
            "--to",
            url,
            "--type",
            "todo.task.created",
        )
        assert code == 0, out
        assert out.splitlines() == [
            f"re-driven (202)  todo.task.created id=e-3  to {url}",
            f"re-driven (202)  todo.task.created id=e-1  to {url}",
        ]
        assert [r.path for r in broker.requests] == ["/nextup/nextup"] * 2
        request = broker.requests[1]
        assert request.method == "POST"
        assert request.headers["ce-id"] == "e-1" and request.headers["ce-source"] == "/todo/app"
        assert request.headers["content-type"] == "application/json"
        assert not [k for k in request.headers if k.startswith("ce-knativeerror")]
        assert json.loads(request.body) == json.loads(DATA)

        fixed = json.dumps({"user_id": "u1", "task_id": "t-1"})
        code, out, _ = run(
            capsys,
            "redrive",
            "--records",
            str(consumed),
            "--to",
            url,
            "--id",
            "e-1",
            "--data",
            fixed,
        )
        assert code == 0 and out.startswith("re-driven (202)")
        assert json.loads(broker.requests[-1].body) == json.loads(fixed)
        code, _, err = run(
            capsys, "redrive", "--records", str(consumed), "--to", url, "--all", "--data", fixed
        )
        assert code == 1 and "select it by its id" in err


def test_a_refused_redrive_is_reported_and_fails(consumed: Path, capsys) -> None:
    with HttpRecorder(respond=lambda r: (503, {}, b"broker not ready")) as broker:
        code, out, _ = run(
            capsys, "redrive", "--records", str(consumed), "--to", broker.url, "--id", "e-3"
        )
    assert code == 1
    assert out == f"re-driven (503)  todo.task.created id=e-3  to {broker.url}: broker not ready\n"
    code, out, _ = run(
        capsys, "redrive", "--records", str(consumed), "--to", "http://127.0.0.1:9/", "--all"
    )
    assert code == 1 and out.count("not re-driven (ConnectError)") == 3


def test_records_and_to_go_together_and_nothing_matching_fails(consumed: Path, capsys) -> None:
    code, _, err = run(capsys, "redrive", "--records", str(consumed), "--all")
    assert code == 2 and "--to URL" in err
    code, _, err = run(capsys, "redrive", "--to", "http://127.0.0.1:9/", "--all")
    assert code == 2 and "--records FILE" in err
    code, out, _ = run(
        capsys, "redrive", "--records", str(consumed), "--to", "http://x/", "--id", "nope"
    )
    assert code == 1 and out == "no dead letter matches\n"
    code, _, err = run(capsys, "list", "--records", str(consumed.with_name("missing")))
    assert code == 1 and "cannot read --records" in err


def test_the_command_reads_consumer_output_on_stdin() -> None:
    """As infra/kind/dead-letters.sh runs it: the installed `nextup`, `--records -`."""
    stdin = "Processed a total of 2 messages\n" + LINE + LINE.replace("ce_id:e-1", "ce_id:e-2")
    with HttpRecorder(respond=lambda r: (202, {}, b"")) as broker:
        listed = subprocess.run(
            [tool("nextup"), "deadletters", "list", "--records", "-", "--json"],
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
        )
        rows = json.loads(listed.stdout)
        url = broker.url
        assert [row["attributes"]["id"] for row in rows] == ["e-1", "e-2"]
        redriven = subprocess.run(
            [tool("nextup"), "deadletters", "redrive", "--records", "-", "--all", "--to", url],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        assert redriven.returncode == 0, redriven.stdout + redriven.stderr
        assert len(broker.requests) == 2


def test_the_script_hands_the_topic_to_the_same_commands() -> None:
    text = SCRIPT.read_text()
    assert "set -euo pipefail" in text
    assert not (ROOT / "infra" / "kind" / "deadletters.py").exists()
    for option in ("timestamp", "partition", "offset", "headers"):
        assert f"--property print.{option}=true" in text, option
    assert "'headers.separator=|'" in text
    assert '"$NEXTUP" deadletters list --records - "$@"' in text
    assert '"$NEXTUP" deadletters redrive --records - \\\n' in text
    assert '--to "http://127.0.0.1:$PORT/$NAMESPACE/nextup" "$@"' in text


def test_the_script_pipes_the_topic_into_the_command(tmp_path: Path) -> None:
    """dead-letters.sh list with stand-ins for kind and kubectl (the consumer's output):
    the user's options reach `nextup deadletters list --records -`."""
    consumer = tmp_path / "consumer.txt"
    consumer.write_text(line("e-1", at=AT) + line("e-2", "todo.task.completed", at=AT + 1000))
    (tmp_path / "kind").write_text("#!/bin/sh\necho nextup\n")
    (tmp_path / "kubectl").write_text(f"#!/bin/sh\ncat {consumer}\n")
    for stand_in in ("kind", "kubectl"):
        (tmp_path / stand_in).chmod(0o755)
    done = subprocess.run(
        ["bash", str(SCRIPT), "list", "--json", "--type", "todo.task.completed"],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if not (ROOT / ".venv" / "bin" / "nextup").exists():
        assert done.returncode == 1 and "make dev" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert [row["attributes"]["id"] for row in json.loads(done.stdout)] == ["e-2"]
