"""The child side of test_event_crash_points: a zygote that imports the functions' code
once, warms up (one delivery to each function on a throwaway store, then every thread and
connection of it closed) and forks a fresh process for each job, so a crash costs a fork
and a warm instance's start, not a cold start.

Protocol: one JSON job a line on stdin, one JSON line back on stdout once the job's
process has ended (``{"exit": code}``); the process writes what it saw to ``job["out"]``
(only a process that was not crashed gets that far). A job delivers ``job["deliveries"]``
one after another to one function, served in the process by functions-framework's ASGI
app (`tests/inprocess.py`: the real routes and runtime), over the store at
``job["env"]["NEXTUP_STORE_URL"]``. The last delivery runs with the store's backend
wrapped (`Crashing`), which counts its calls and, where ``job["crash"]`` says, ends the
process with ``os._exit`` (no exception, no cleanup, no flush: a crash):

- ``["before", i]``: as backend call i begins; ``["after", i]``: as it returns (for the
  last call: the unit of work is done and the answer not yet given);
- ``["during", i, j]``: inside call i. SQLite: as the call's statement j begins (the
  connection's trace callback: BEGIN IMMEDIATE, each conditional write, COMMIT).
  DynamoDB: right after the call's request j reached moto and moto answered it, before
  the client reads the answer (the client talks to moto through a proxy in this process,
  which exits instead of passing the answer on).

A job with ``job["race"]`` instead delivers each of those (function, headers, body) from
a process of its own, all released at once when every one is ready, each answer written to
``job["out"]``.<i>: concurrent deliveries across processes, as replicas of a function.

Nothing in the functions' code is changed: the wrapper replaces the backend of the Store
that the function's `Services` opened, as `tests/store/test_store_commit.py`'s `Counting`
does.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import sys
import tempfile
import threading
import traceback
from typing import Any
from urllib.parse import urlsplit

# What a function needs for an event, imported once here, before any fork (`warm_up`
# imports the rest): the zygote keeps no client, connection or thread of its own.
import boto3  # noqa: F401
import functions_framework.aio  # noqa: F401
import httpx

import inprocess
import nextup.handlers.complete_task
import nextup.handlers.schedule_next
import nextup.runtime
import nextup.store.dynamodb
import nextup.store.sqlite

CRASH = 77  # the exit code of a process crashed on purpose


def crash() -> None:
    os._exit(CRASH)


class Proxy(http.server.ThreadingHTTPServer):
    """HTTP between the DynamoDB client and moto, request by request; when armed, it lets
    request `armed` reach moto, waits for moto's answer, and crashes the process instead
    of passing it on."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.requests: list[str] = []  # X-Amz-Target of each request, in order
        self.armed: int | None = None  # crash after this many more answered requests
        super().__init__(("127.0.0.1", 0), _Forward)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        server: Proxy = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        server.requests.append(self.headers.get("x-amz-target", ""))
        upstream = http.client.HTTPConnection(*server.upstream, timeout=30)
        upstream.request("POST", self.path, body=body, headers=dict(self.headers))
        answer = upstream.getresponse()
        content = answer.read()
        upstream.close()
        if server.armed is not None:
            server.armed -= 1
            if server.armed < 0:
                crash()  # moto did it and answered; the client never hears of it
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


class Crashing:
    """The store's backend with its calls counted (and, per call, its SQLite statements or
    DynamoDB requests), crashing the process where `plan` says."""

    def __init__(self, backend: Any, plan: list | None, proxy: Proxy | None) -> None:
        self.backend = backend
        self.plan = plan
        self.proxy = proxy
        self.calls: list[str] = []
        self.steps: list[list[str]] = []  # per call: its statements or requests

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.backend, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            i = len(self.calls)
            self.calls.append(name)
            self.steps.append([])
            plan = self.plan
            if plan == ["before", i]:
                crash()
            during = plan[2] if plan and plan[0] == "during" and plan[1] == i else None
            self._watch(i, during)
            try:
                result = found(*args, **kwargs)
            finally:
                self._unwatch(i)
            if plan == ["after", i]:
                crash()
            return result

        return call

    def _watch(self, i: int, during: int | None) -> None:
        if self.proxy is not None:
            self._seen = len(self.proxy.requests)
            self.proxy.armed = during
            return
        steps = self.steps[i]

        def statement(sql: str) -> None:  # called as each statement begins
            if during is not None and len(steps) == during:
                crash()
            steps.append(sql.split(None, 1)[0].upper())

        self.backend._conn().set_trace_callback(statement)

    def _unwatch(self, i: int) -> None:
        if self.proxy is not None:
            self.proxy.armed = None
            self.steps[i] = self.proxy.requests[self._seen :]
            return
        self.backend._conn().set_trace_callback(None)


def answer(response: httpx.Response) -> dict[str, Any]:
    """What a delivery was answered: status, the reply event's attributes (not its `time`,
    which is when it was answered) and the body."""
    ce = {k: v for k, v in response.headers.items() if k.startswith("ce-") and k != "ce-time"}
    return {"status": response.status_code, "ce": ce, "body": response.text}


class Deliveries:
    """The job's functions in this process, each started on its first delivery, over the
    job's store (DynamoDB: through a `Proxy` when `proxied`)."""

    def __init__(self, job: dict[str, Any], *, proxied: bool) -> None:
        os.environ.update(job["env"])
        self.proxy = None
        if proxied and job["env"]["NEXTUP_STORE_URL"].startswith("dynamodb:"):
            self.proxy = Proxy(os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = self.proxy.url
        self.started: dict[str, inprocess.LoneFunction] = {}

    def function(self, name: str) -> inprocess.LoneFunction:
        if name not in self.started:
            self.started[name] = inprocess.LoneFunction(name, dict(os.environ)).start()
        return self.started[name]

    def deliver(self, name: str, headers: dict, body: str) -> dict[str, Any]:
        function = self.function(name)
        return answer(function.client.post(function.url, headers=headers, content=body))

    def stop(self) -> None:
        for function in self.started.values():
            function.stop()


def run(job: dict[str, Any]) -> None:
    """The deliveries one after another, the last over the `Crashing` backend."""
    deliveries = Deliveries(job, proxied=True)
    *seeds, (name, headers, body) = job["deliveries"]
    answers = [deliveries.deliver(*seed) for seed in seeds]
    store = deliveries.function(name).function.app.services.store
    wrapped = Crashing(store._backend, job["crash"], deliveries.proxy)
    store._backend = wrapped
    answers.append(deliveries.deliver(name, headers, body))
    store._backend = wrapped.backend
    with open(job["out"], "w") as out:
        json.dump({"answers": answers, "calls": wrapped.calls, "steps": wrapped.steps}, out)
    deliveries.stop()


def race(job: dict[str, Any]) -> None:
    """Each of `job["race"]` delivered by a process of its own, all released at once once
    every one is ready (its function started, its store client built); each answer to
    ``job["out"]``.<i>."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids = []
    for i, (name, headers, body) in enumerate(job["race"]):
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(go_w)
            code = 0
            try:
                deliveries = Deliveries(job, proxied=False)
                deliveries.function(name).function.app.services.store.ping()
                os.write(ready_w, b".")
                os.read(go_r, 1)  # end of file when the zygote's child lets go
                found = deliveries.deliver(name, headers, body)
                with open(f"{job['out']}.{i}", "w") as out:
                    json.dump(found, out)
                deliveries.stop()
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
                code = 1
            os._exit(code)
        pids.append(pid)
    os.close(ready_w)
    os.close(go_r)
    for _ in pids:
        assert os.read(ready_r, 1) == b".", "a racer died before it was ready"
    os.close(go_w)  # every racer's read returns now
    failed = [pid for pid in pids if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} racers failed")


def warm_up() -> None:
    """One delivery to each function on a throwaway SQLite store, and a DynamoDB client
    built (never used), so that every fork starts as a warm instance: the modules the
    first event imports are imported, botocore's models are loaded (`make_client`'s loader
    is shared). Its threads end with it: the zygote forks with none but its own."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"NEXTUP_STORE_URL": f"sqlite:///{tmp}/warm.db"}
        deliveries = Deliveries({"env": env}, proxied=False)
        for name, type_, data in WARM_UP:
            headers = {
                "ce-specversion": "1.0",
                "ce-id": f"warm-{type_}",
                "ce-source": "/warm-up",
                "ce-type": type_,
                "content-type": "application/json",
            }
            deliveries.deliver(name, headers, json.dumps(data))
        deliveries.stop()
    saved = dict(os.environ)
    os.environ.update({"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9", **WARM_AWS})
    nextup.store.dynamodb.make_client()
    os.environ.clear()
    os.environ.update(saved)
    assert threading.active_count() == 1, threading.enumerate()


WARM_TASK = {"user_id": "warm", "task_id": "t", "due_at": "2030-01-01T09:00:00"}
WARM_UP = (
    ("schedule-next", "todo.task.created", {**WARM_TASK, "recurrence": {"rule": "FREQ=DAILY"}}),
    ("complete-task", "todo.task.completed", WARM_TASK),
)
WARM_AWS = {"AWS_ACCESS_KEY_ID": "warm", "AWS_SECRET_ACCESS_KEY": "warm", "AWS_REGION": "eu-west-1"}


def main() -> None:
    # No TLS is spoken here (moto, the sink: plain HTTP on loopback): an empty CA directory
    # spares every fork the parse of certifi's bundle when it builds its HTTP client.
    empty = tempfile.mkdtemp(prefix="no-ca-")
    os.environ["SSL_CERT_DIR"] = empty
    os.environ.pop("SSL_CERT_FILE", None)
    warm_up()
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.dup2(2, 1)  # stdout is the zygote's answer channel
            try:
                race(job) if "race" in job else run(job)
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
