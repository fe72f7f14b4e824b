"""Real local peers for function tests: an SMTP server, a recording HTTP server, and the
functions themselves as functions-framework processes on loopback.

Waiting is always on a condition with a deadline, never a bare sleep; a peer that does
not come up fails the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from peers import free_port

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, message: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}")
        event.wait(0.02)


class MailServer:
    """aiosmtpd on a loopback port, keeping every message it receives."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> MailServer:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[Message]:
        with self._lock:
            return list(self.messages)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # The client's (host, port): which connection, and so which process, sent it.
    client: tuple[str, int] = ("", 0)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpRecorder:
    """A real HTTP server recording every request; `respond` decides each answer."""

    respond: Callable[[Recorded], tuple[int, dict[str, str], bytes]] = field(
        default=lambda r: (200, {"content-type": "application/json"}, b"{}")
    )
    requests: list[Recorded] = field(default_factory=list)

    def start(self, port: int = 0) -> HttpRecorder:
        """Listen on `port` (default: any free one)."""
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = Recorded(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    self.client_address[:2],
                )
                recorder.requests.append(request)
                status, headers, body = recorder.respond(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_OPTIONS = do_PUT = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FunctionProcess:
    """One function served by `functions-framework` in its own process, as in production."""

    def __init__(self, name: str, env: dict[str, str], port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self) -> FunctionProcess:
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--source",
                str(ROOT / "functions" / self.name / "main.py"),
                "--target",
                "handle",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            cwd=env.get("NEXTUP_TEST_CWD", str(ROOT)),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.url}/health/liveness", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not start within {START_TIMEOUT:.0f} s:\n{self.log()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.05)

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-6000:]

    def log_lines(self) -> list[dict]:
        lines = []
        for line in Path(self._log.name).read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# The credentials moto server takes; the endpoint is the test's own.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


@dataclass
class FunctionGroup:
    """Function processes over one store, with the mail server and the HTTP recorder they
    talk to. `launch` initialises the store and starts each function with its own env;
    if one fails to start, everything started so far is stopped."""

    store_url: str
    env: dict[str, str]
    mail: MailServer
    web: HttpRecorder
    functions: dict[str, FunctionProcess] = field(default_factory=dict)
    store: Any = None  # nextup.store.Store, opened by `launch`

    def launch(self, names: tuple[str, ...], env_for: Callable[[str], dict[str, str]]) -> None:
        from nextup.store import open_store

        self.store = open_store(self.store_url)
        self.store.init()
        try:
            for name in names:
                self.functions[name] = FunctionProcess(name, env_for(name)).start()
        except Exception:
            self.stop()
            raise

    def url(self, name: str) -> str:
        return self.functions[name].url

    def urls(self) -> dict[str, str]:
        return {name: f.url for name, f in self.functions.items()}

    def log_lines(self) -> list[dict]:
        return [line for f in self.functions.values() for line in f.log_lines()]

    def stop(self) -> None:
        for process in self.functions.values():
            process.stop()
        self.mail.stop()
        self.web.stop()
        if self.store is not None:
            self.store.close()


def cloud_event(
    type_: str, data: Any, *, id_: str, source: str = "/tests", **extensions: str
) -> tuple[dict, bytes]:
    """Binary-mode headers and body for a CloudEvent."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": source,
        "ce-type": type_,
        "content-type": "application/json",
    }
    headers.update({f"ce-{k}": v for k, v in extensions.items()})
    return headers, json.dumps(data).encode()


def structured_event(
    type_: str, data: Any, *, id_: str, source: str = "/tests"
) -> tuple[dict, bytes]:
    envelope = {"specversion": "1.0", "id": id_, "source": source, "type": type_, "data": data}
    return {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode()
