"""The body of `nextup dev`: start every part in order, show what flows, stop it all.

Parts and order: Kafka (Tansu, or `--kafka`), the topics, the store, the mailbox, the
broker ingress, the functions (or the activator, with `--scale-to-zero`), the dispatcher
(its own process, so it can crash and be restarted like a pod), the dead-letter mirror
and the PingSources. Stopping goes the other way. `.nextup/dev.json` says where every part
is and which process is which, for `nextup emit` and for people.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
import uvicorn

from nextup.envelope import CloudEvent
from nextup_dev import deadletters, kafka, manifests, schedule
from nextup_dev.activator import Activator
from nextup_dev.fleet import FunctionInstance, function_env
from nextup_dev.manifests import Destination, Eventing, PingSource
from nextup_dev.ports import free_port
from nextup_dev.processes import ManagedProcess, tcp_ready
from nextup_dev.status import TRIGGER_COUNTS, Board, Flow, Tally
from nextup_dev.terminal import Terminal, reminder_news

STATE_FILE = "dev.json"
log = logging.getLogger("nextup.dev")
PARTS = (
    "kafka",
    "store",
    "mailbox",
    "ingress",
    "functions",
    "dispatcher",
    "dead-letter mirror",
    "ping sources",
)


def default_eventing_dir() -> Path | None:
    """The manifests of the checkout `nextup dev` runs in (`eventing/base` under the working
    directory), else those of the checkout this package was installed from (editable);
    None when there is no checkout: the manifests are then rendered from the function
    declarations in memory (`nextup_dev.render`), the same text `make generate` writes."""
    for candidate in (Path("eventing", "base"), Path(__file__).parents[2] / "eventing" / "base"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


@dataclass
class Options:
    port: int = 8080
    kafka: str | None = None
    store: str | None = None
    eventing: Path | None = field(default_factory=default_eventing_dir)
    state_dir: Path = Path(".nextup")
    scale_to_zero: bool = False
    idle: float = 60.0
    routes: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    concurrency: int = 16
    summary_every: float = 30.0
    # The web console at /ui (and the dispatcher's ring of attempts it reads).
    console: bool = True


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `nextup dev` stops the whole stack itself."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


async def serve_http(app: Any, sock: socket.socket) -> tuple[_Server, asyncio.Task[None]]:
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("HTTP server stopped while starting")
        await asyncio.sleep(0.01)
    return server, task


def bind(port: int, what: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = (
                " (is another nextup dev running? Stop it, or pick another port: "
                f"nextup dev --port {port + 1}, or make dev ARGS='--port {port + 1}')"
            )
        raise RuntimeError(
            f"cannot listen on 127.0.0.1:{port} for the {what}: {exc.strerror}{hint}"
        ) from None
    sock.listen(1024)
    return sock


class DevStack:
    def __init__(self, options: Options, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.state_dir = options.state_dir.resolve()
        self.logs = self.state_dir / "logs"
        self.mail_dir = self.state_dir / "mail"
        self.dead_dir = self.state_dir / "dead-letters"
        self.eventing: Eventing | None = None
        self.board = Board()
        # Every part, not yet up: GET /healthz answers 200 only once all of them are.
        self.parts = dict.fromkeys(PARTS, False)
        self.stop_event = asyncio.Event()
        self.bootstrap = ""
        self.ingress_url = f"http://127.0.0.1:{options.port}"
        self.store_url = ""
        self.store_name = ""
        self.kafka_process: ManagedProcess | None = None
        self.dispatcher: ManagedProcess | None = None
        self.functions: dict[str, FunctionInstance] = {}
        self.routes: dict[str, str] = {}
        self.activator: Activator | None = None
        self.mailbox = None
        self.producer = None
        self.end_offsets: kafka.EndOffsets | None = None
        self._servers: list[tuple[_Server, asyncio.Task[None]]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._dispatcher_ready = asyncio.Event()
        self._stoppers: list[Callable[[], Awaitable[None]]] = []
        self.terminal = Terminal(out, quiet=options.quiet)
        # The console at /ui: fed one append per event; works only while a browser asks.
        from nextup_dev.console.api import Console

        self.console = Console(self, free_port()) if options.console else None
        self.started = False  # every part came up (so there is something to sum up)

    # What flows

    def show(self, line: str, *, on_terminal: bool = True) -> None:
        self.terminal.show(line, on_terminal=on_terminal)

    def on_flow(self, flow: Flow) -> None:
        self.board.record(flow)
        self.display(flow)

    def on_event_in(self, kind: str, event: CloudEvent, key: str | None) -> None:
        """The ingress took an event: counted, and shown as the terminal sees fit."""
        detail = key and f"key={key}"
        if kind == "unrouted":
            detail = f"no Trigger matches it: nothing receives it (source {event['source']})"
        flow = Flow(kind, None, event["type"], event["id"], detail=detail)
        self.board.record(flow)
        self.terminal.event_in(flow)
        news = reminder_news(event)
        if news is not None:
            self.on_flow(news)

    def display(self, flow: Flow) -> None:
        if flow.kind == "ready":
            self._dispatcher_ready.set()
        if flow.kind in ("process", "cold"):
            self.write_state()  # pids changed
        self.terminal.happened(flow)

    def on_dispatcher_line(self, line: str) -> None:
        tally = Tally.decode(line)
        if tally is not None:
            self.board.add(tally)
            self.terminal.held_back(int(str(tally.get("hidden") or 0)))
            return
        flow = Flow.decode(line)
        if flow is None:
            self.show(f"dispatcher: {line}")
        elif flow.kind in TRIGGER_COUNTS:
            self.display(flow)  # counted by the dispatcher's tallies already
        else:
            self.on_flow(flow)

    # Starting

    async def start(self) -> None:
        began = time.monotonic()
        options = self.options
        self.eventing = eventing = manifests.load(options.eventing)
        for source in eventing.ping_sources:
            schedule.check(source)
        self.board = Board(
            {t.name: eventing.broker(t.namespace, t.broker).topic for t in eventing.triggers}
        )
        for directory in (self.logs, self.mail_dir, self.dead_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # Library warnings (aiokafka retrying a lost broker, many times a second) go to a
        # file: the terminal is for what flows, and says itself when a part goes down.
        logging.basicConfig(
            filename=self.logs / "nextup-dev.log",
            level=logging.WARNING,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
        log.setLevel(logging.INFO)  # and every line shown (or held back by --quiet)
        # The ingress port first: a taken port is the likeliest failure; fail before starting.
        ingress_socket = bind(options.port, "broker ingress")
        try:
            await self._start_kafka()
            await kafka.ensure_topics(self.bootstrap, self._topics(eventing))
            await self._init_store()
            self._start_mailbox()
            await self._start_ingress(ingress_socket)
        except BaseException:
            ingress_socket.close()
            raise
        await self._plan_functions()
        # The functions and the dispatcher start together: each function's address is known
        # already, and an event that reaches one still starting is retried, as in a cluster.
        await asyncio.gather(
            self._start_functions(), self._start_dispatcher(), self._start_mirror()
        )
        self._start_ping_sources()
        self.write_state()
        # Ready (GET /healthz) only once dev.json says where everything is.
        self.parts["ping sources"] = True
        self.started = True
        self.banner(time.monotonic() - began)

    def _topics(self, eventing: Eventing) -> list[kafka.Topic]:
        topics = [kafka.Topic(b.topic, b.partitions, b.replication) for b in eventing.brokers]
        topics += [kafka.Topic(s.topic, s.partitions, s.replication) for s in eventing.kafka_sinks]
        return topics

    async def _start_kafka(self) -> None:
        if self.options.kafka:
            host, port = kafka.split_address(self.options.kafka)
            if not await tcp_ready(host, port):
                raise RuntimeError(f"no Kafka answers at {self.options.kafka}")
            self.bootstrap = self.options.kafka
            self.parts["kafka"] = True
            return
        port = free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        self.kafka_process = ManagedProcess(
            "kafka",
            kafka.tansu_argv(port),
            log_path=self.logs / "kafka.log",
            ready=lambda: tcp_ready("127.0.0.1", port),
            report=self._process_news,
            # Tansu keeps topics and offsets in memory: a restarted one would silently hold
            # none of them. It stays down, /healthz says so, the ingress answers 503.
            restart=False,
        )
        await self.kafka_process.start()
        self._stoppers.append(self.kafka_process.stop)
        self.parts["kafka"] = True

    async def _init_store(self) -> None:
        from nextup.config import settings
        from nextup.store import open_store

        self.store_url = self.options.store or settings().store_url

        def init() -> None:
            store = open_store(self.store_url)
            try:
                store.init()
                self.store_name = store.name  # absolute: the same store from anywhere
            finally:
                store.close()

        await asyncio.to_thread(init)
        self.parts["store"] = True

    def _start_mailbox(self) -> None:
        from nextup_dev.mailbox import Mailbox

        loop = asyncio.get_running_loop()

        def mailed(path: Path) -> None:
            flow = Flow("mail", detail=f"kept in {path}")
            if self.console is not None:
                self.console.mailed(path)
            loop.call_soon_threadsafe(self.on_flow, flow)

        self.mailbox = Mailbox(self.mail_dir, on_mail=mailed).start(free_port())
        self.parts["mailbox"] = True

    async def _start_ingress(self, sock: socket.socket) -> None:
        from aiokafka import AIOKafkaProducer

        from nextup_dev.ingress import Ingress

        assert self.eventing is not None
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, **kafka.PRODUCER_SETTINGS
        )
        await self.producer.start()
        topics = [b.topic for b in self.eventing.brokers]
        self.end_offsets = kafka.EndOffsets(self.bootstrap, topics)
        await self.end_offsets.start()
        ingress = Ingress(
            self.eventing,
            self.producer,
            self.on_event_in,
            lambda: dict(self.parts),
            self.status,
            observe=self.console.took if self.console is not None else None,
            routes=self.console.routes() if self.console is not None else [],
        )
        self._servers.append(await serve_http(ingress.app, sock))
        self.ingress_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.parts["ingress"] = True

    async def status(self) -> dict[str, object]:
        """GET /status: the board, with the records the broker topics hold now (from Kafka,
        not from our own counts: a produce retried inside the client can write a record
        twice) and whether every Trigger has dispatched them all."""
        return self.board.snapshot(await self.end_offsets.records())

    def broker_url(self, namespace: str, name: str) -> str:
        assert self.eventing is not None
        return self.ingress_url + self.eventing.broker(namespace, name).path

    async def _plan_functions(self) -> None:
        """A port and an environment per function; with scale-to-zero, the activator."""
        assert self.eventing is not None
        broker = self.eventing.brokers[0]
        env_base = dict(os.environ)
        wanted = [name for name in self.eventing.services() if name not in self.options.routes]
        for name in wanted:
            env = function_env(
                name,
                store_url=self.store_url,
                smtp_url=self.mailbox.url,  # type: ignore[union-attr]
                sink_url=self.broker_url(broker.namespace, broker.name) + f"?from=function:{name}",
                base=env_base,
            )
            self.functions[name] = FunctionInstance(
                name,
                free_port(),
                env,
                self.logs,
                self.on_flow,
                scale_to_zero=self.options.scale_to_zero,
                cwd=Path.cwd(),
            )
        self.routes = dict(self.options.routes)
        if self.options.scale_to_zero and self.functions:
            self.activator = Activator(self.functions, self.options.idle)
            sock = bind(free_port(), "activator")
            self._servers.append(await serve_http(self.activator.app, sock))
            port = sock.getsockname()[1]
            self.activator.start()
            for name in self.functions:
                self.routes[name] = self.activator.url(port, name)
        else:
            for name, function in self.functions.items():
                self.routes[name] = function.url + "/"

    async def _start_functions(self) -> None:
        if not self.options.scale_to_zero:
            await asyncio.gather(*(f.start() for f in self.functions.values()))
        self.parts["functions"] = True

    async def _start_dispatcher(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "nextup_dev.dispatcher",
            "--kafka",
            self.bootstrap,
            "--concurrency",
            str(self.options.concurrency),
        ]
        if self.console is not None:
            argv += ["--console-port", str(self.console.dispatcher_port)]
        if self.options.eventing is not None:  # else it renders the same manifests itself
            argv += ["--eventing", str(self.options.eventing.resolve())]
        for name, url in self.routes.items():
            argv += ["--route", f"{name}={url}"]
        self.dispatcher = ManagedProcess(
            "dispatcher",
            argv,
            log_path=self.logs / "dispatcher.log",
            ready=self._dispatcher_is_ready,
            on_line=self.on_dispatcher_line,
            report=self._process_news,
            start_timeout=60.0,
        )
        self.parts["dispatcher"] = False
        await self.dispatcher.start()
        self.parts["dispatcher"] = True

    async def _dispatcher_is_ready(self) -> bool:
        # A restarted dispatcher announces itself again; until then deliveries wait in Kafka.
        return self._dispatcher_ready.is_set()

    def _process_news(self, kind: str, name: str, detail: str) -> None:
        if name == "dispatcher" and kind == "crashed":
            self._dispatcher_ready.clear()
        if name == "kafka" and kind == "exited":
            self.parts["kafka"] = False
            detail += "; its events are gone with it (memory storage): restart nextup dev"
        self.on_flow(Flow("process", detail=f"{name} {kind}: {detail}"))

    async def _start_mirror(self) -> None:
        assert self.eventing is not None
        topics = sorted({s.topic for s in self.eventing.kafka_sinks})
        for topic in topics:
            ready = asyncio.Event()
            task = asyncio.create_task(
                deadletters.mirror(
                    self.bootstrap, topic, self.dead_dir, self.on_flow, self.stop_event, ready
                )
            )
            self._tasks.append(task)
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                waiter.cancel()
                task.result()
        self.parts["dead-letter mirror"] = True

    def _start_ping_sources(self) -> None:
        assert self.eventing is not None
        for source in self.eventing.ping_sources:
            self._tasks.append(asyncio.create_task(self._ping(source), name=f"ping-{source.name}"))

    def sink_url(self, destination: Destination) -> str:
        if destination.uri:
            return destination.uri
        assert destination.ref is not None
        return self.broker_url(destination.ref.namespace, destination.ref.name)

    async def _ping(self, source: PingSource) -> None:
        while not self.stop_event.is_set():
            at = schedule.next_tick(source.schedule, source.timezone, datetime.now(UTC))
            delay = (at - datetime.now(UTC)).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), max(delay, 0))
            if self.stop_event.is_set():
                return
            await self.fire(source, at)

    async def fire(self, source: PingSource, at: datetime | None = None) -> dict[str, Any]:
        """Send `source`'s tick for `at` (now, when the console or `nextup ping` asks)."""
        url = self.sink_url(source.sink)
        if source.sink.ref is not None:  # our own ingress: say the tick is one
            url += f"?from=pingsource:{source.name}"
        headers, body = schedule.tick_request(source, at or datetime.now(UTC))
        status = None
        try:
            async with httpx.AsyncClient() as client:
                response = await client.post(url, headers=headers, content=body, timeout=10)
            status = response.status_code
            detail = f"{source.name} -> {status}"
        except httpx.TransportError as exc:
            detail = f"{source.name} not sent: {type(exc).__name__}"
        # Counted by the ingress that took it; shown here, with its answer.
        self.display(Flow("tick", None, manifests.PING_TYPE, headers["ce-id"], detail=detail))
        return {"name": source.name, "id": headers["ce-id"], "status": status, "detail": detail}

    async def post_event(self, event: CloudEvent, origin: str) -> int | None:
        """Post `event` to the first broker's ingress, as a producer would; its answer's
        status (None when it did not answer)."""
        from nextup.envelope import to_binary

        assert self.eventing is not None
        broker = self.eventing.brokers[0]
        url = self.broker_url(broker.namespace, broker.name) + f"?from={origin}"
        headers, body = to_binary(event)
        try:
            async with httpx.AsyncClient() as client:
                response = await client.post(url, headers=headers, content=body, timeout=10)
        except httpx.TransportError:
            return None
        return response.status_code

    # Telling people where things are

    def state(self) -> dict[str, Any]:
        eventing = self.eventing
        assert eventing is not None
        return {
            "ingress": self.broker_url(eventing.brokers[0].namespace, eventing.brokers[0].name),
            "healthz": f"{self.ingress_url}/healthz",
            "console": f"{self.ingress_url}/ui" if self.console is not None else None,
            "kafka": self.bootstrap,
            "topics": [b.topic for b in eventing.brokers] + [s.topic for s in eventing.kafka_sinks],
            "store": self.store_url,
            "mail": str(self.mail_dir),
            "smtp": self.mailbox.url if self.mailbox else None,
            "dead_letters": str(self.dead_dir),
            "logs": str(self.logs),
            "routes": self.routes,
            "pids": {
                "nextup-dev": os.getpid(),
                "kafka": self.kafka_process.pid if self.kafka_process else None,
                "dispatcher": self.dispatcher.pid if self.dispatcher else None,
                **{
                    name: f.process.pid if f.process.running else None
                    for name, f in self.functions.items()
                },
            },
        }

    def write_state(self) -> None:
        if self.eventing is None:
            return
        path = self.state_dir / STATE_FILE
        partial = path.with_name(f".{path.name}.part")
        partial.write_text(json.dumps(self.state(), indent=2) + "\n")
        partial.rename(path)

    def banner(self, seconds: float) -> None:
        eventing = self.eventing
        assert eventing is not None
        functions = "  ".join(
            f"{name} {'(scaled to zero)' if self.options.scale_to_zero else url}"
            for name, url in self.routes.items()
        )
        pings = ", ".join(f"{p.name} '{p.schedule}' {p.timezone}" for p in eventing.ping_sources)
        self.terminal.banner(
            seconds,
            self.state(),
            {
                "kafka": "external" if self.options.kafka else "tansu, in memory",
                "functions": functions,
                "triggers": str(len(eventing.triggers)),
                "pings": pings,
                "manifests": str(self.options.eventing or manifests.RENDERED),
                "store": self.store_name,
            },
        )

    # Running and stopping

    async def run(self) -> None:
        """Until `stop_event`: print the per-Trigger table whenever it changed, now and then."""
        while not self.stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), self.options.summary_every)
            if self.board.changed and not self.stop_event.is_set():
                self.show(self.board.table())

    async def stop(self) -> None:
        self.stop_event.set()
        if self.dispatcher is not None:
            await self.dispatcher.stop(grace=10.0)
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5.0)
        if self.activator is not None:
            await self.activator.stop()
        await asyncio.gather(*(f.stop() for f in self.functions.values()), return_exceptions=True)
        for server, task in reversed(self._servers):
            server.should_exit = True
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5.0)
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        if self.end_offsets is not None:
            await self.end_offsets.stop()
        if self.mailbox is not None:
            self.mailbox.stop()
        for stopper in reversed(self._stoppers):
            await stopper()
        if self.started:
            self.show(self.board.table())
        with contextlib.suppress(OSError):
            (self.state_dir / STATE_FILE).unlink()


async def main(options: Options) -> int:
    """`nextup dev`: run until SIGINT or SIGTERM; 0 after a clean stop."""
    import signal

    stack = DevStack(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stack.stop_event.set)
    try:
        starting = asyncio.create_task(stack.start())
        stopped = asyncio.create_task(stack.stop_event.wait())
        await asyncio.wait([starting, stopped], return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        else:
            stopped.cancel()
            starting.result()
            stack.show("")
            await stack.run()
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"nextup dev: {exc}", file=sys.stderr)
        await stack.stop()
        return 1
    stack.show("stopping ...")
    await stack.stop()
    stack.show("stopped.")
    return 0
