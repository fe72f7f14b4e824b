"""Users are isolated, in every function and on both store backends: another user's task
cannot be completed, updated, deleted, re-registered, asked for its next occurrence or
reminded of, by guessing its id, reusing it, or deriving it (`<series>@<YYYYMMDDTHHMMSSZ>`,
and the hashed form long series ids get). Every attempt is refused with 403, the answer
does not say whose the task is, and the store is exactly as before (a full dump).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from figures import record
from relstack import FunctionSet

from harness import cloud_event


@pytest.fixture(scope="module", params=["sqlite", "dynamodb"])
def fs(request, tmp_path_factory, moto_server) -> Iterator[FunctionSet]:
    with pytest.MonkeyPatch.context() as mp:
        stack = FunctionSet.start(
            request.param, tmp_path_factory.mktemp("isolation"), mp, moto=moto_server
        )
        stack.kind = request.param
        try:
            yield stack
        finally:
            stack.stop()


def post(fs: FunctionSet, function: str, type_: str, data: dict, id_: str | None = None):
    headers, body = cloud_event(type_, data, id_=id_ or uuid.uuid4().hex, source="/isolation")
    return httpx.post(fs.functions[function].url, headers=headers, content=body, timeout=30)


def victim_world(fs: FunctionSet) -> dict[str, str]:
    """A victim's tasks: plain, recurring with its next occurrence, and a series whose id is
    so long that its occurrences get hashed ids. Returns the ids."""
    victim = f"victim-{uuid.uuid4().hex[:6]}"
    due = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    ids = {
        "victim": victim,
        "plain": f"p-{uuid.uuid4().hex[:8]}",
        "series": f"s-{uuid.uuid4().hex[:8]}",
        "long": "L" + uuid.uuid4().hex * 4 + "x" * 10,  # 139 characters: no room for @stamp
    }
    ids["long"] = ids["long"][:120]
    for key in ("plain", "series", "long"):
        data = {
            "user_id": victim,
            "task_id": ids[key],
            "title": "Secret plans",
            "due_at": due.isoformat(),
            "reminder": {"before": "PT5M"},
            "notify": {"email": "victim@example.com"},
        }
        if key != "plain":
            data["recurrence"] = {"rule": "FREQ=DAILY"}
        assert post(fs, "schedule-next", "todo.task.created", data).status_code == 202
    for key in ("series", "long"):
        done = post(
            fs, "complete-task", "todo.task.completed", {"user_id": victim, "task_id": ids[key]}
        )
        assert done.status_code == 200, done.text
        headers = {k: v for k, v in done.headers.items() if k.startswith("ce-")}
        headers["content-type"] = "application/json"
        scheduled = httpx.post(
            fs.functions["schedule-next"].url, headers=headers, content=done.content, timeout=30
        )
        assert scheduled.status_code == 200, scheduled.text
        ids[f"{key}-next"] = scheduled.json()["task_id"]
    assert "@" in ids["series-next"] and ids["series-next"].startswith(ids["series"])
    digest = hashlib.sha256(ids["long"].encode()).hexdigest()[:24]
    assert ids["long-next"].startswith(digest + "@")
    # Ids the victim's series will need later, not created yet.
    stamp = (due + timedelta(days=30)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    ids["series-future"] = f"{ids['series']}@{stamp}"
    ids["long-future"] = f"{digest}@{stamp}"
    return ids


def attempts(mallory: str, ids: dict[str, str]) -> list[tuple[str, str, dict]]:
    existing = ("plain", "series", "series-next", "long", "long-next")
    out: list[tuple[str, str, dict]] = []
    for key in existing:
        task = ids[key]
        out += [
            ("complete-task", "todo.task.completed", {"user_id": mallory, "task_id": task}),
            (
                "complete-task",
                "todo.task.completed",
                {"user_id": mallory, "task_id": task, "title": "mine now"},
            ),
            (
                "schedule-next",
                "todo.task.updated",
                {"user_id": mallory, "task_id": task, "notify": {"email": "m@example.com"}},
            ),
            ("schedule-next", "todo.task.deleted", {"user_id": mallory, "task_id": task}),
            ("schedule-next", "todo.task.created", {"user_id": mallory, "task_id": task}),
            (
                "send-reminder",
                "todo.reminder.due",
                {"user_id": mallory, "task_id": task},
            ),
            (
                "complete-task",
                "com.dapr.event.sent",
                {"event_type": "task.completed", "user_id": mallory, "task_id": task},
            ),
        ]
    # Squatting the ids the victim's series will need, plain and hashed.
    for key in ("series-future", "long-future"):
        out += [
            (
                "schedule-next",
                "todo.task.created",
                {"user_id": mallory, "task_id": ids[key], "title": "squat"},
            ),
            ("schedule-next", "todo.task.deleted", {"user_id": mallory, "task_id": ids[key]}),
            (
                "complete-task",
                "todo.task.completed",
                {"user_id": mallory, "task_id": ids[key], "title": "squat"},
            ),
        ]
    # Asking for the next occurrence of the victim's series.
    for task, series in (
        (ids["series"], ids["series"]),
        (f"{mallory}.own", ids["series"]),
        (ids["long-next"], ids["long"]),
    ):
        out.append(
            (
                "schedule-next",
                "todo.occurrence.requested",
                {
                    "user_id": mallory,
                    "task_id": task,
                    "series_id": series,
                    "due_at": "2026-11-24T09:00:00Z",
                    "completed_at": "2026-11-24T10:00:00Z",
                    "recurrence": {"rule": "FREQ=DAILY"},
                },
            )
        )
    return out


def test_cross_user_attempts_are_refused_and_change_nothing(fs):
    ids = victim_world(fs)
    mallory = f"mallory-{uuid.uuid4().hex[:6]}"
    before = fs.dump()
    mails = len(fs.mail.received())
    tried = attempts(mallory, ids)
    failures = []
    for function, type_, data in tried:
        response = post(fs, function, type_, data)
        if response.status_code != 403:
            failures.append(
                f"{type_} {data.get('task_id')}: {response.status_code} {response.text}"
            )
            continue
        text = response.text
        if ids["victim"] in text or "Secret plans" in text:
            failures.append(f"{type_}: the answer reveals the owner: {text}")
    # Reusing the victim's own event identity (source + id) as mallory: not a replay of
    # the victim's answer, which would carry the victim's task.
    victim_event = f"victim-done-{uuid.uuid4().hex[:6]}"
    first = post(
        fs,
        "complete-task",
        "todo.task.completed",
        {"user_id": ids["victim"], "task_id": ids["series-next"]},
        id_=victim_event,
    )
    assert first.status_code == 200
    before = fs.dump()
    reused = post(
        fs,
        "complete-task",
        "todo.task.completed",
        {"user_id": mallory, "task_id": ids["series-next"]},
        id_=victim_event,
    )
    if reused.status_code != 403 or "Secret plans" in reused.text:
        failures.append(f"reused event identity: {reused.status_code} {reused.text}")
    assert failures == [], "\n".join(failures)
    assert fs.dump() == before, "a refused attempt changed the store"
    assert fs.store.list_tasks(mallory) == []
    assert len(fs.mail.received()) == mails, "nobody was reminded"
    record(f"isolation[{fs.kind}]", attempts=len(tried) + 1, refused=len(tried) + 1)
