"""DynamoDB calls per event: what each event costs in store requests (what a user pays per
request), counted by a proxy in front of moto that every request of the real function
processes passes through, by operation (`X-Amz-Target`).

complete-task and schedule-next run as functions-framework processes on a DynamoDB table in
moto. For each case, `EVENTS` events of that kind (each for a task of its own) are posted one
after another, and the proxy's counts before and after give the calls per event; a first
event per function, not counted, pays for what a process does once (connections, table
checks). A recurring cycle is a completion and the occurrence request it answers with.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench import describe, machine
from nextup.envelope import parse_http
from nextup_dev.launcher import FunctionProcess
from nextup_dev.moto import MotoServer, aws_env
from nextup_dev.ports import free_port

EVENTS = 20
QUICK_EVENTS = 3
GOAL = 2  # calls per event the lean path is held to (issue: "<= 2"); a cycle: 4
CYCLE_GOAL = 4


class CountingProxy(ThreadingHTTPServer):
    """Relays every HTTP request to `upstream` and counts them by DynamoDB operation."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", free_port()), _Relay)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore uses it

    def do_POST(self) -> None:  # the name http.server calls
        server: CountingProxy = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        operation = (self.headers.get("X-Amz-Target") or "other").rpartition(".")[2]
        with server.lock:
            server.counts[operation] += 1
        upstream = http.client.HTTPConnection(server.upstream.hostname, server.upstream.port)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            upstream.request("POST", self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        finally:
            upstream.close()

    def log_message(self, *args: object) -> None:  # quiet
        return


def _post(url: str, type_: str, data: dict, id_: str) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": "/bench/storecalls",
        "ce-type": type_,
        "content-type": "application/json",
    }
    response = httpx.post(url, headers=headers, content=json.dumps(data), timeout=30)
    assert response.is_success, f"{type_}: {response.status_code} {response.text}"
    return response


def _task(user: str, task: str) -> dict:
    return {
        "user_id": user,
        "task_id": task,
        "title": "Water the plants",
        "due_at": "2026-11-23T09:00:00+01:00",
        "timezone": "Europe/Berlin",
        "recurrence": {"rule": "FREQ=DAILY"},
        "reminder": {"before": "PT15M"},
        "notify": {"email": "ann@example.com"},
    }


def run(quick: bool = False, events: int | None = None) -> dict:
    count = events or (QUICK_EVENTS if quick else EVENTS)
    info = machine()
    moto = MotoServer(atomic=False).start()
    proxy = CountingProxy(moto.url)
    table = f"calls-{uuid.uuid4().hex[:8]}"
    functions: dict[str, FunctionProcess] = {}
    try:
        create_table(moto.url, table)
        env = {
            **os.environ,
            **aws_env(proxy.url),
            "NEXTUP_STORE_URL": f"dynamodb://{table}",
            "NEXTUP_LOG_LEVEL": "WARNING",
        }
        for name in ("complete-task", "schedule-next"):
            functions[name] = FunctionProcess(name, env).start()
        schedule, complete = functions["schedule-next"].url, functions["complete-task"].url
        cases: dict[str, list[Counter[str]]] = {}

        def measured(case: str, url: str, type_: str, data: dict, id_: str) -> httpx.Response:
            before = proxy.snapshot()
            response = _post(url, type_, data, id_)
            cases.setdefault(case, []).append(proxy.snapshot() - before)
            return response

        for n in range(count + 1):  # the first of each is an uncounted warm-up
            warm = "warm-up " if n == 0 else ""
            task = _task(f"u{n}", f"t{n}")
            done = {"user_id": task["user_id"], "task_id": task["task_id"]}
            measured(f"{warm}todo.task.created", schedule, "todo.task.created", task, f"c-{n}")
            measured(
                f"{warm}todo.task.created, redelivered",
                schedule,
                "todo.task.created",
                task,
                f"c-{n}",
            )
            reply = measured(
                f"{warm}todo.task.completed", complete, "todo.task.completed", done, f"d-{n}"
            )
            request = parse_http(dict(reply.headers), reply.content)
            measured(
                f"{warm}todo.occurrence.requested",
                schedule,
                request["type"],
                request.data,
                request["id"],
            )
            measured(
                f"{warm}todo.task.completed, redelivered",
                complete,
                "todo.task.completed",
                done,
                f"d-{n}",
            )
    finally:
        for function in functions.values():
            function.stop()
        proxy.shutdown()
        moto.stop()
    summary = {
        case: _per_event(counts) for case, counts in cases.items() if not case.startswith("warm")
    }
    completed, occurrence = summary["todo.task.completed"], summary["todo.occurrence.requested"]
    summary["a recurring cycle (completed + occurrence)"] = {
        "calls": round(completed["calls"] + occurrence["calls"], 2),
        "operations": dict(Counter(completed["operations"]) + Counter(occurrence["operations"])),
    }
    return {"machine": info, "quick": quick, "events": count, "summary": summary}


def create_table(endpoint: str, table: str) -> None:
    """The table, made straight at moto (not counted)."""
    from nextup.store import open_store

    with moto_direct(endpoint), open_store(f"dynamodb://{table}") as store:
        store.init()


@contextlib.contextmanager
def moto_direct(endpoint: str) -> Iterator[None]:
    """This process's store calls go straight to moto at `endpoint` for a while (set-up and
    checks a benchmark does not count), then the environment is as it was."""
    saved = dict(os.environ)
    os.environ.update(aws_env(endpoint))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _per_event(counters: list[Counter[str]]) -> dict:
    total: Counter[str] = Counter()
    for counter in counters:
        total.update(counter)
    n = len(counters)
    return {
        "calls": round(sum(total.values()) / n, 2),
        "operations": {op: round(c / n, 2) for op, c in sorted(total.items())},
    }


def verdicts(results: dict) -> list[tuple[str, str, bool | None]]:
    out = []
    for case, row in results["summary"].items():
        goal = CYCLE_GOAL if case.startswith("a recurring cycle") else GOAL
        if "redelivered" in case:
            continue
        out.append((f"DynamoDB calls, {case} ≤ {goal}", f"{row['calls']:g}", row["calls"] <= goal))
    return out


def render(results: dict) -> str:
    lines = [
        "## DynamoDB calls per event",
        "",
        __doc__.split("\n\n")[0].replace("\n", " "),
        "",
        f"{describe(results['machine'])}. {results['events']} events per case, after one "
        "uncounted warm-up each.",
        "",
        "| event | calls per event | by operation |",
        "| --- | ---: | --- |",
    ]
    for case, row in results["summary"].items():
        ops = ", ".join(f"{op} {count:g}" for op, count in row["operations"].items())
        lines.append(f"| {case} | {row['calls']:g} | {ops} |")
    lines.append("")
    return "\n".join(lines)


def files(results: dict, docs: Path) -> list[Path]:
    return []
