"""The seed's recurring-task service (its Example 1), as a user following the seed would run
it: FastAPI and httpx, served by uvicorn, behind what would be a Dapr sidecar.

    SEED_BACKEND_URL=http://127.0.0.1:9000 SEED_STATE_DB=/tmp/seed.db \\
        uvicorn bench.baselines.seed_style:app --port 8080

For each `task.completed` event in the seed's shape it does what schedule-next does for
`todo.occurrence.requested`: computes the next occurrence with python-dateutil, creates it
through the backend (the seed's `dapr.invoke_service(app_id="backend", method="api/tasks")`,
here a plain HTTP POST to SEED_BACKEND_URL), and keeps it idempotent as the seed's Example 4
does: look the key up in a state store, create when absent, then save the key. The state
store (Dapr's `get_state`/`save_state`) is a local SQLite file with the same settings as
nextup's (WAL, synchronous=NORMAL), used from worker threads as nextup's store is.

Like the seed it checks only that `user_id` is present and answers `{"status": "success"}`;
it has no receipts for redeliveries, no ownership checks and no reminders: less work than
schedule-next, which is the point of comparing against it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from dateutil.parser import isoparse
from dateutil.rrule import rrulestr
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class StateStore:
    """Dapr's key/value state API over SQLite: one connection per thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.local = threading.local()
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self.local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")
            self.local.db = db
        return db

    def get(self, key: str) -> dict | None:
        row = self._db().execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def save(self, key: str, value: dict) -> None:
        self._db().execute(
            "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, json.dumps(value))
        )


class Dapr:
    """The calls the seed makes through its DaprClient, to a backend and a state store."""

    def __init__(self, backend: str, state: StateStore) -> None:
        self.http = httpx.AsyncClient(base_url=backend, timeout=5.0)
        self.state = state

    async def invoke_service(self, app_id: str, method: str, data: dict) -> dict:
        response = await self.http.post(f"/{method}", json=data)
        response.raise_for_status()
        return response.json()

    async def get_state(self, key: str) -> dict | None:
        return await asyncio.to_thread(self.state.get, key)

    async def save_state(self, key: str, value: dict) -> None:
        await asyncio.to_thread(self.state.save, key, value)


def calculate_next(pattern: str, dtstart: datetime, end_date: str | None) -> datetime | None:
    """The seed's `RRuleParser.calculate_next`: the first occurrence after `dtstart`."""
    following = rrulestr(pattern, dtstart=dtstart).after(dtstart)
    if following is not None and end_date and following > isoparse(end_date):
        return None
    return following


dapr: Dapr | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global dapr
    dapr = Dapr(os.environ["SEED_BACKEND_URL"], StateStore(os.environ["SEED_STATE_DB"]))
    yield
    await dapr.http.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/dapr/subscribe")
async def subscribe() -> list[dict]:
    return [
        {"pubsubname": "kafka-pubsub", "topic": "task-events", "route": "/api/events/task-events"}
    ]


@app.post("/api/events/task-events")
async def handle_task_event(request: Request) -> JSONResponse:
    cloud_event = await request.json()
    event_data = cloud_event.get("data", {})
    user_id = event_data.get("user_id")  # user isolation, as the seed checks it
    if not user_id:
        return JSONResponse({"status": "error"}, status_code=400)
    if event_data.get("event_type") == "task.completed":
        await handle_task_completed(event_data, user_id)
    return JSONResponse({"status": "success"})


async def handle_task_completed(event_data: dict, user_id: str) -> None:
    assert dapr is not None
    task_id = event_data.get("task_id")
    payload = event_data.get("payload", {})
    recurring_pattern = payload.get("recurring_pattern")
    if not recurring_pattern:
        return
    next_occurrence = calculate_next(
        recurring_pattern,
        dtstart=datetime.now(UTC).replace(microsecond=0),
        end_date=payload.get("recurring_end_date"),
    )
    if next_occurrence is None:
        return
    # Example 4: one next occurrence per completed task, whatever is redelivered.
    key = f"next-occurrence-{user_id}-{task_id}"
    if await dapr.get_state(key):
        return
    result = await dapr.invoke_service(
        app_id="backend",
        method="api/tasks",
        data={
            "title": payload.get("title"),
            "user_id": user_id,
            "recurring_pattern": recurring_pattern,
            "next_occurrence": next_occurrence.isoformat(),
            "parent_task_id": task_id,
            "idempotency_key": key,
        },
    )
    await dapr.save_state(key, {"created": True, "task_id": result.get("task_id")})
