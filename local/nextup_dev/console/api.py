"""The console's HTTP side, served by the broker ingress under `/ui`: the page, its JSON,
and one server-sent event stream that says "something changed" while a browser is open.

Nothing here runs unless a browser (or `nextup deadletters` / `nextup ping`) asks: events
in are queued by the ingress with one append and turned into the timeline on the next
request; the dispatcher's attempts are fetched from its ring only then, and every half
second while a stream is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nextup.envelope import CloudEvent, event_key, make_event
from nextup_dev import deadletters, schedule
from nextup_dev.binding import attributes as record_attributes
from nextup_dev.binding import record_from_event
from nextup_dev.console import attempts
from nextup_dev.console.redrive import (
    Selection,
    event_of,
    newest_per_event,
    parse_time,
    select,
)
from nextup_dev.console.timeline import LIMIT, Query, Timeline, event_ref
from nextup_dev.delivery import backoff

STATIC = Path(__file__).resolve().parent / "static"
STREAM_EVERY = 0.5  # seconds between looks for news while a browser is open
LOG_TAIL = 6000  # characters of a function's log shown


def _json(value: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(value, default=str), status_code=status, media_type="application/json"
    )


def _problem(status: int, error: str) -> Response:
    return _json({"error": error}, status)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class Console:
    """The console of one running `nextup dev` (`stack`: `nextup_dev.stack.DevStack`)."""

    def __init__(self, stack: Any, dispatcher_port: int) -> None:
        self.stack = stack
        self.dispatcher_port = dispatcher_port
        self.timeline = Timeline()
        # What the ingress took, not yet looked at: (kind, event, time, origin).
        self.pending: deque[tuple[str, CloudEvent, float, str]] = deque(maxlen=LIMIT)
        self.mail_pending: deque[Path] = deque(maxlen=1000)
        self.redriven: dict[str, dict[str, Any]] = {}  # dead-letter file -> what became of it
        self.streams = 0  # browsers with the console open
        self._seq = 0
        self._dispatcher_pid: int | None = None
        self._lock = asyncio.Lock()
        self._letters_cache: dict[str, dict[str, Any]] = {}  # file name -> its letter

    # Fed by the stack: one append each

    def took(self, kind: str, event: CloudEvent, origin: str) -> None:
        self.pending.append((kind, event, time.time(), origin))

    def mailed(self, path: Path) -> None:
        self.mail_pending.append(path)

    # Catching up, when asked

    async def sync(self) -> None:
        async with self._lock:
            timeline = self.timeline
            eventing = self.stack.eventing
            if timeline.routed is None and eventing is not None:
                timeline.subscribers = {
                    t.name: t.subscriber.ref.name
                    for t in eventing.triggers
                    if t.subscriber.ref is not None
                }
                timeline.schedules = {t.name: retry_schedule(t.delivery) for t in eventing.triggers}
                timeline.routed = lambda attributes: any(
                    t.filter({k: str(v) for k, v in attributes.items()}) for t in eventing.triggers
                )
            while self.pending:
                kind, event, at, origin = self.pending.popleft()
                via = origin.partition(":")[2] if origin.startswith("function:") else None
                timeline.add_event(kind, dict(event.get_attributes()), _data(event), at=at, via=via)
            while self.mail_pending:
                timeline.add_mail(_mail(self.mail_pending.popleft()))
            dispatcher = self.stack.dispatcher
            pid = dispatcher.pid if dispatcher is not None else None
            if pid != self._dispatcher_pid:  # a restarted dispatcher counts from 1 again
                self._dispatcher_pid, self._seq = pid, 0
            if pid is None:
                return
            found = await attempts.fetch(self.dispatcher_port, self._seq)
            if found:
                timeline.add_attempts(found)
                self._seq = found[-1]["seq"]

    # Routes

    def routes(self) -> list[Any]:
        api = [
            Route("/timeline", self.timeline_page, methods=["GET"]),
            Route("/events/{ref}", self.event_page, methods=["GET"]),
            Route("/stream", self.stream, methods=["GET"]),
            Route("/deadletters", self.dead_letters, methods=["GET"]),
            Route("/deadletters/redrive", self.redrive, methods=["POST"]),
            Route("/state", self.state, methods=["GET"]),
            Route("/functions", self.functions, methods=["GET"]),
            Route("/clock", self.clock, methods=["GET"]),
            Route("/ping/{name}", self.ping, methods=["POST"]),
            Route("/catalog", self.catalog, methods=["GET"]),
            Route("/send", self.send, methods=["POST"]),
        ]
        return [
            Route("/ui", self.index, methods=["GET"]),
            Mount(
                "/ui",
                routes=[
                    Route("/", self.index, methods=["GET"]),
                    Mount("/api", routes=api),
                    Mount("/static", app=StaticFiles(directory=STATIC)),
                ],
            ),
        ]

    @staticmethod
    def _refused(request: Request) -> Response | None:
        """A POST must say it is JSON: a page elsewhere can post a form or plain text to
        127.0.0.1 unasked, but not JSON without a preflight this server never allows."""
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            return _problem(415, "send JSON (content-type: application/json)")
        return None

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def timeline_page(self, request: Request) -> Response:
        await self.sync()
        params = request.query_params
        query = Query(
            type=params.get("type", ""),
            user=params.get("user", ""),
            id=params.get("id", ""),
            outcome=params.get("outcome", ""),
        )
        limit = min(int(params.get("limit") or 200), 1000)
        return _json(
            {
                "events": self.timeline.query(query, limit),
                "kept": len(self.timeline.entries),
                "types": self.timeline.types(),
                "users": self.timeline.users(),
                "version": self.timeline.version,
            }
        )

    async def event_page(self, request: Request) -> Response:
        await self.sync()
        ref = request.path_params["ref"]
        entry = self.timeline.get(ref)
        if entry is None:
            return _problem(404, f"no event {ref} in the timeline (it keeps the last {LIMIT})")
        return _json({"event": entry.detail(), "chain": self.timeline.chain(ref)})

    async def stream(self, request: Request) -> Response:
        """`text/event-stream`: a `changed` event whenever the timeline moved on."""
        stop = self.stack.stop_event

        async def events():
            self.streams += 1
            seen = -1
            try:
                yield "retry: 1000\n\n"
                while not stop.is_set():
                    await self.sync()
                    version = self.timeline.version
                    if version != seen:
                        seen = version
                        yield f"event: changed\ndata: {version}\n\n"
                    else:
                        yield ": idle\n\n"
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), STREAM_EVERY)
            finally:
                self.streams -= 1

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # Dead letters

    def _letters(self) -> list[dict[str, Any]]:
        """The mirrored dead letters, newest first; a file is read once (its name is its
        partition and offset, rewritten only with the same content)."""
        cache = self._letters_cache
        names = deadletters.newest(self.stack.dead_dir)
        letters = []
        for name in names:
            letter = cache.get(name)
            if letter is None:
                letter = deadletters.read(self.stack.dead_dir / name)
                if letter is None:
                    continue
                cache[name] = letter
            letters.append({**letter, "redriven": self.redriven.get(name)})
        for name in set(cache) - set(names):
            del cache[name]
        return letters

    async def dead_letters(self, request: Request) -> Response:
        return _json({"letters": await asyncio.to_thread(self._letters)})

    async def redrive(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        try:
            body = await request.json()
            assert isinstance(body, dict)
            selection = Selection(
                id=str(body.get("id") or ""),
                type=str(body.get("type") or ""),
                status=int(body["status"]) if body.get("status") else None,
                since=parse_time(str(body["since"])) if body.get("since") else None,
                until=parse_time(str(body["until"])) if body.get("until") else None,
                all=bool(body.get("all")),
            )
        except (ValueError, AssertionError, TypeError) as exc:
            return _problem(400, f"not a re-drive request: {exc}")
        if selection.empty:
            return _problem(400, "say which dead letters: id, type, status, since, until or all")
        dry_run = bool(body.get("dry_run"))
        data = body.get("data")
        letters = select(await asyncio.to_thread(self._letters), selection)
        if data is not None and len(letters) != 1:
            return _problem(400, "fixed data re-drives one dead letter: select it by its id")
        # The newest letter of an event only: the same event dead-lettered twice goes once.
        plans = await asyncio.to_thread(self._plan, newest_per_event(letters), data)
        if not dry_run:
            for plan, (letter, event) in plans:
                plan["posted"] = await self.stack.post_event(event, "console")
                self.redriven[letter["file"]] = {"at": time.time(), "status": plan["posted"]}
        return _json({"dry_run": dry_run, "letters": [plan for plan, _ in plans]})

    def _plan(
        self, letters: list[dict[str, Any]], data: Any
    ) -> list[tuple[dict[str, Any], tuple[dict[str, Any], CloudEvent]]]:
        """Where each letter would go: the Triggers matching its event, their functions,
        and whether the store holds a receipt for it (handled already)."""
        from nextup.store import open_store

        eventing = self.stack.eventing
        out = []
        with open_store(self.stack.store_url) as store:
            for letter in letters:
                event = event_of(letter, data)
                attrs = record_attributes(record_from_event(event).headers)
                receipt = store.get_receipt(event_key(event))
                handled = None if receipt is None else {"status": receipt.status}
                targets = [
                    {
                        "trigger": t.name,
                        "function": t.subscriber.ref.name if t.subscriber.ref else None,
                        "uri": t.subscriber.uri,
                        "handled": handled,
                    }
                    for t in eventing.triggers
                    if t.filter(attrs)
                ]
                plan = {
                    "file": letter["file"],
                    "id": attrs.get("id"),
                    "type": attrs.get("type"),
                    "status": letter.get("error", {}).get("status"),
                    "data": event.data,
                    "triggers": targets,
                    "handled": handled,
                }
                out.append((plan, (letter, event)))
        return out

    # State

    async def state(self, request: Request) -> Response:
        user = request.query_params.get("user", "").strip()
        if not user:
            await self.sync()
            return _json({"user": None, "users": self.timeline.users()})
        return _json(await asyncio.to_thread(self._state_of, user))

    def _state_of(self, user: str) -> dict[str, Any]:
        from nextup.store import open_store

        with open_store(self.stack.store_url) as store:
            tasks = store.list_tasks(user)
            reminders = {r.task_id: r for r in store.list_reminders(user)}
        series: dict[str, dict[str, Any]] = {}
        for task in sorted(tasks, key=lambda t: (t.series_id, t.occurrence)):
            one = series.setdefault(
                task.series_id,
                {
                    "series_id": task.series_id,
                    "title": task.title,
                    "recurrence": task.recurrence.rule if task.recurrence else None,
                    "occurrences": [],
                    "next_due": None,
                },
            )
            one["title"] = task.title or one["title"]
            one["occurrences"].append(
                {
                    "task_id": task.task_id,
                    "occurrence": task.occurrence,
                    "status": task.status.value,
                    "due_at": _iso(task.due_at),
                    "completed_at": _iso(task.completed_at),
                    "skipped_at": _iso(task.skipped_at),
                }
            )
            if task.status.value == "open" and task.due_at is not None:
                due = one["next_due"]
                if due is None or task.due_at.isoformat() < due:
                    one["next_due"] = task.due_at.isoformat()
        return {
            "user": user,
            "series": list(series.values()),
            "reminders": [r.model_dump(mode="json") for r in reminders.values()],
        }

    # Functions and the clock

    async def functions(self, request: Request) -> Response:
        stack = self.stack
        rows = []
        for name, function in stack.functions.items():
            process = function.process
            if process.running and function.serving:
                state = "up"
            elif stack.options.scale_to_zero:
                state = "scaled to zero" if function.cold_starts else "cold"
            else:
                state = "starting" if not process.running else "up"
            rows.append(
                {
                    "name": name,
                    "state": state,
                    "pid": process.pid if process.running else None,
                    "port": function.port,
                    "route": stack.routes.get(name),
                    "cold_starts": function.cold_starts,
                    "start_ms": [round(s * 1000) for s in function.start_times],
                    "log": _tail(stack.logs / f"{name}.log"),
                }
            )
        return _json({"scale_to_zero": stack.options.scale_to_zero, "functions": rows})

    async def clock(self, request: Request) -> Response:
        now = datetime.now(UTC)
        return _json(
            {
                "ping_sources": [
                    {
                        "name": p.name,
                        "schedule": p.schedule,
                        "timezone": p.timezone,
                        "data": p.data.decode(errors="replace"),
                        "next": schedule.next_tick(p.schedule, p.timezone, now).isoformat(),
                    }
                    for p in self.stack.eventing.ping_sources
                ]
            }
        )

    async def ping(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        name = request.path_params["name"]
        found = [p for p in self.stack.eventing.ping_sources if p.name == name]
        if not found:
            known = ", ".join(p.name for p in self.stack.eventing.ping_sources) or "none"
            return _problem(404, f"no PingSource {name}; there are: {known}")
        return _json(await self.stack.fire(found[0]))

    # Sending

    async def catalog(self, request: Request) -> Response:
        from nextup.catalog import consumers
        from nextup.events import CATALOG

        return _json(
            {
                "types": [
                    {
                        "type": t.type,
                        "summary": t.summary,
                        "producer": t.producer,
                        "consumers": list(consumers(t)),
                        "example": t.example,
                    }
                    for t in CATALOG.values()
                ]
            }
        )

    async def send(self, request: Request) -> Response:
        import uuid

        if (refused := self._refused(request)) is not None:
            return refused
        try:
            body = await request.json()
            event = make_event(
                str(body["type"]),
                str(body.get("source") or "/nextup/console"),
                body.get("data"),
                id_=str(body.get("id") or uuid.uuid4()),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _problem(400, f"not an event to send: {exc!r}")
        status = await self.stack.post_event(event, "console")
        ref = event_ref(event["source"], event["id"])
        return _json({"id": event["id"], "type": event["type"], "status": status, "ref": ref})


def retry_schedule(delivery: Any) -> str:
    """A Trigger's `delivery` in words: how often, after which waits, then where."""
    end = "dead-lettered" if delivery.dead_letter is not None else "dropped"
    if not delivery.retry:
        return f"no retries, then {end}"
    waits = [backoff(delivery, n).total_seconds() for n in range(1, delivery.retry + 1)]
    shown = ", ".join(f"{w:g}" for w in waits[:6]) + (", ..." if len(waits) > 6 else "")
    return f"{delivery.retry} retries after {shown} s ({delivery.backoff_policy}), then {end}"


def _data(event: CloudEvent) -> Any:
    data = event.data
    if isinstance(data, (bytes, bytearray)):
        raw = bytes(data[:4096])
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")
    return data


def _mail(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
    except OSError:
        return {"name": path.name, "at": time.time()}
    return {
        "name": path.name,
        "path": str(path),
        "to": str(message.get("To", "")),
        "subject": str(message.get("Subject", "")),
        "task": str(message.get("X-Nextup-Task", "")),
        "at": time.time(),
    }


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""
