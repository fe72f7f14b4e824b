"""The functions in the test's own process: the fast layer (`pytest -m fast`, `make
test-fast`).

Each function is loaded from its entry point (`functions/<name>/main.py`, a fresh module
and so a fresh `nextup.runtime.App` per start) and served by functions-framework's own
ASGI app, reached through `httpx.ASGITransport`: the same routes, middleware and runtime
as a function process, without the fork, the imports and the sockets. What a function
talks to stays real: the store (an SQLite file, or DynamoDB on the moto server), the SMTP
server, the HTTP servers.

- Settings: read from the function's own environment (`env`) when it starts, the way a
  process reads its environment, and handed to its `App` with fresh `Services`: nothing
  goes through `nextup.config.settings()`'s process-wide cache, so each function, and
  each test's stack, has its own settings, breakers and clients.
- One event loop per group, on a thread of its own: the functions' async clients,
  breakers and the store calls live on it as they live on a process's loop, and the
  tests stay as they are (blocking calls from the test's thread, or from many threads).
- `transport` is an httpx transport that reaches the functions by host name
  (`http://<function>.inprocess/...`, see `InProcessFunction.url`), so a test posts with
  an `httpx.Client(transport=...)` as it would over the network.
- Logs: what the functions log (the `nextup` logger) is kept per function as the JSON
  lines a process would print (`log_lines`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib.util
import itertools
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "inprocess"
ANSWER_TIMEOUT = 60.0  # seconds for one request: a hung handler fails the test, not the run

# (host, name) of the function handling the request at hand, for its log lines.
_current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "function", default=None
)
_environ_lock = threading.Lock()


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment for a moment (while settings and clients
    read it), then as it was."""
    with _environ_lock:
        saved = dict(os.environ)
        os.environ.update(values)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


class _Logs(logging.Handler):
    """The `nextup` logger's records, as each function's JSON lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[str, list[dict]] = {}
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        from nextup.logs import JsonFormatter

        current = _current.get()
        if current is None:
            return
        host, name = current
        line = json.loads(JsonFormatter(name).format(record))
        with self._lock:
            self.lines.setdefault(host, []).append(line)

    def of(self, host: str) -> list[dict]:
        with self._lock:
            return list(self.lines.get(host, []))


class Loop:
    """An event loop on a thread of its own, for the functions of one group."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="inprocess", daemon=True)
        self.thread.start()
        self.logs = _Logs()
        self.hosts: dict[str, InProcessFunction] = {}  # host -> the function serving it
        self.serial = itertools.count(2)
        logger = logging.getLogger("nextup")
        logger.addHandler(self.logs)
        self._level = logger.level
        logger.setLevel(logging.INFO)

    def run(self, coroutine: Any, timeout: float = ANSWER_TIMEOUT) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        logger = logging.getLogger("nextup")
        logger.removeHandler(self.logs)
        logger.setLevel(self._level)
        with contextlib.suppress(Exception):
            self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class InProcessFunction:
    """One function served by functions-framework's ASGI app in this process; the same
    surface as `harness.FunctionProcess` where the tests use it (`url`, `env`, `start`,
    `stop`, `log_lines`)."""

    def __init__(self, name: str, env: dict[str, str], loop: Loop) -> None:
        self.name = name
        self.env = env
        # A host of its own: a second instance of a function on the loop (other settings,
        # same group) is told apart from the first.
        self.host = f"{name}.{DOMAIN}"
        if self.host in loop.hosts:
            self.host = f"{name}-{next(loop.serial)}.{DOMAIN}"
        loop.hosts[self.host] = self
        self.url = f"http://{self.host}"
        self._loop = loop
        self.app: Any = None  # nextup.runtime.App, once started
        self.transport: httpx.ASGITransport | None = None

    def start(self) -> InProcessFunction:
        import functions_framework.aio

        from nextup.config import Settings
        from nextup.services import Services

        source = ROOT / "functions" / self.name / "main.py"
        spec = importlib.util.spec_from_file_location(f"inprocess_{uuid.uuid4().hex}", source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        asgi = functions_framework.aio.create_asgi_app_from_module(
            "handle", str(source), "http", module, spec
        )
        app = module.handle.app
        with environ(self.env):
            settings = Settings()
            services = Services(settings, self.name)
            _ = services.http  # its proxies are read from the environment, as in a process
            if not settings.store_url.startswith("sqlite:"):
                _ = services.store  # likewise the AWS endpoint and credentials (an SQLite
                # store reads none, and is left alone until the first event, as in a process)
        # What `App.services` would open on the first request, from this function's own
        # settings instead of the process-wide `nextup.config.settings()`.
        app._services = services
        app._log = logging.getLogger("nextup")
        self.app = app
        current = (self.host, self.name)

        async def serve(scope: Any, receive: Any, send: Any) -> None:
            token = _current.set(current)
            try:
                await asgi(scope, receive, send)
            finally:
                _current.reset(token)

        self.transport = httpx.ASGITransport(app=serve)
        return self

    def log_lines(self) -> list[dict]:
        return self._loop.logs.of(self.host)

    def stop(self) -> None:
        self._loop.hosts.pop(self.host, None)
        services = getattr(self.app, "_services", None)
        if services is None:
            return
        with contextlib.suppress(Exception):
            self._loop.run(services.http.aclose())
        if services._store is not None:
            services.store.close()
        self.app._services = None


class Bridge(httpx.BaseTransport):
    """An httpx transport to the functions started on `loop`, by host (`InProcessFunction.
    url`), usable from any thread: each request runs on the functions' loop."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def forward(self, request: httpx.Request, body: bytes) -> Any:
        """The coroutine that answers `request` on the functions' loop."""
        function = self.loop.hosts.get(request.url.host)
        if function is None or function.transport is None:
            raise httpx.ConnectError(f"no function at {request.url.host}", request=request)
        transport = function.transport

        async def send() -> httpx.Response:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await transport.handle_async_request(forwarded)
            content = await response.aread()
            return httpx.Response(
                response.status_code, headers=response.headers, stream=httpx.ByteStream(content)
            )

        return send()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.loop.run(self.forward(request, request.read()))


class AsyncBridge(httpx.AsyncBaseTransport):
    """`Bridge` for an `httpx.AsyncClient` on another loop (e.g. a test's `asyncio.run`)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        future = asyncio.run_coroutine_threadsafe(
            self.bridge.forward(request, body), self.bridge.loop.loop
        )
        return await asyncio.wait_for(asyncio.wrap_future(future), ANSWER_TIMEOUT)


class LoneFunction:
    """One in-process function with its own loop, for a test about a single function:
    `client` reaches it at `url`."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.loop = Loop()
        self.function = InProcessFunction(name, env, self.loop)
        self.url = self.function.url
        self.client = httpx.Client(transport=Bridge(self.loop), timeout=30)

    def start(self) -> LoneFunction:
        try:
            self.function.start()
        except BaseException:
            self.stop()
            raise
        return self

    def log_lines(self) -> list[dict]:
        return self.function.log_lines()

    def stop(self) -> None:
        self.function.stop()
        self.client.close()
        self.loop.close()


__all__ = ["AsyncBridge", "Bridge", "InProcessFunction", "LoneFunction", "Loop", "environ"]
