"""The dead-letter helper reads what the console consumer prints and re-posts real events."""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from deploy_helpers import ROOT, tool

PATH = ROOT / "infra" / "kind" / "deadletters.py"
_spec = importlib.util.spec_from_file_location("deadletters", PATH)
deadletters = importlib.util.module_from_spec(_spec)
sys.modules["deadletters"] = deadletters  # dataclasses look their module up there
_spec.loader.exec_module(deadletters)

ANSWER = '{"error": "data.task_id: Field required", "field": "data.task_id"}'
DATA = '{"user_id": "u1", "title": "Water the plants"}'
LINE = (
    "ce_specversion:1.0|ce_id:e-1|ce_source:/todo/app|ce_type:todo.task.created"
    "|ce_time:2026-11-24T09:00:00Z|content-type:application/json"
    "|ce_knativeerrordest:http://schedule-next.nextup.svc.cluster.local"
    "|ce_knativeerrorcode:400"
    f"|ce_knativeerrordata:{base64.b64encode(ANSWER.encode()).decode()}"
    f"\t{DATA}\n"
)


def test_a_record_line_becomes_the_event_and_its_error() -> None:
    letter = deadletters.parse(LINE)
    assert letter.attributes["time"] == "2026-11-24T09:00:00Z"  # colons in values survive
    assert letter.content_type == "application/json"
    assert letter.data == DATA
    described = letter.describe()
    assert described["error"] == {
        "destination": "http://schedule-next.nextup.svc.cluster.local",
        "status": "400",
        "answer": ANSWER,
    }
    assert "knativeerrorcode" not in described["event"]
    assert described["event"]["type"] == "todo.task.created"


@pytest.mark.parametrize(
    "line",
    ["", "Processed a total of 3 messages\n", "ce_id:1|ce_type:x\t{}\n", "no tab at all\n"],
)
def test_lines_that_are_not_events_are_skipped(line: str) -> None:
    assert deadletters.parse(line) is None


@pytest.fixture
def receiver() -> Iterator[tuple[str, list]]:
    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((dict(self.headers.items()), body.decode()))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/nextup/nextup", received
    server.shutdown()
    server.server_close()


def test_redrive_posts_the_original_event_in_binary_mode(receiver: tuple[str, list]) -> None:
    url, received = receiver
    status = deadletters.redrive(deadletters.parse(LINE), url)
    assert status == 202
    ((headers, body),) = received
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["ce-id"] == "e-1" and lowered["ce-source"] == "/todo/app"
    assert lowered["ce-type"] == "todo.task.created"
    assert lowered["content-type"] == "application/json"
    assert not [k for k in lowered if k.startswith("ce-knativeerror")]
    assert body == DATA


def test_the_command_reads_consumer_output(receiver: tuple[str, list]) -> None:
    url, received = receiver
    stdin = "Processed a total of 2 messages\n" + LINE + LINE.replace("ce_id:e-1", "ce_id:e-2")
    listed = subprocess.run(
        ["python3", str(PATH), "list"], input=stdin, capture_output=True, text=True, check=True
    )
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["event"]["id"] for row in rows] == ["e-1", "e-2"]
    redriven = subprocess.run(
        ["python3", str(PATH), "redrive", "--url", url],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert redriven.returncode == 0, redriven.stderr
    assert len(received) == 2


def test_the_helper_is_lint_clean() -> None:
    for args in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [tool("ruff"), *args, str(PATH)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
