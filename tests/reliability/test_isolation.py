"""Users are isolated, in every function and on both store backends: a task id means
something only in its own user's partition, so another user's task cannot be completed,
updated, deleted, re-registered, asked for its next occurrence or reminded of, by guessing
its id, reusing it, or deriving it (`<series>@<YYYYMMDDTHHMMSSZ>`, and the hashed form
long series ids get). Whatever mallory sends acts on mallory's own ids: the victim's items
are exactly as before, no answer says anything of the victim (the answers are the ones an
id nobody has gets), nobody is reminded, and the victim's series still gets each of its
occurrences once, however many of its future ids mallory took first.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from figures import record
from relstack import FunctionSet

from harness import cloud_event
from nextup import tasks
from nextup.envelope import parse_http

pytestmark = pytest.mark.fast


fs = FunctionSet.fixture("fs", "isolation", in_process=True)


def post(fs: FunctionSet, function: str, type_: str, data: dict, id_: str | None = None):
    headers, body = cloud_event(type_, data, id_=id_ or uuid.uuid4().hex, source="/isolation")
    return fs.caller.post(fs.url(function), headers=headers, content=body)


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
        scheduled = fs.caller.post(fs.url("schedule-next"), headers=headers, content=done.content)
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


def victims(fs: FunctionSet, victim: str) -> tuple[list, list]:
    return (
        [t.model_dump() for t in fs.store.list_tasks(victim)],
        [r.model_dump() for r in fs.store.list_reminders(victim)],
    )


def test_cross_user_attempts_reach_only_the_senders_own_ids(fs):
    ids = victim_world(fs)
    victim = ids["victim"]
    mallory = f"mallory-{uuid.uuid4().hex[:6]}"
    before = victims(fs, victim)
    mails = len(fs.mail.received())
    tried = attempts(mallory, ids)
    failures = []
    for function, type_, data in tried:
        response = post(fs, function, type_, data)
        if response.status_code >= 500:
            failures.append(f"{type_} {data.get('task_id')}: {response.status_code}")
        if victim in response.text or "Secret plans" in response.text:
            failures.append(f"{type_}: the answer reveals the victim: {response.text}")
    # Reusing the victim's own event identity (source + id) as mallory: not a replay of
    # the victim's answer (which would carry the victim's task), and nothing done.
    victim_event = f"victim-done-{uuid.uuid4().hex[:6]}"
    first = post(
        fs,
        "complete-task",
        "todo.task.completed",
        {"user_id": victim, "task_id": ids["series-next"]},
        id_=victim_event,
    )
    assert first.status_code == 200
    before = victims(fs, victim)
    mine = [t.model_dump() for t in fs.store.list_tasks(mallory)]
    reused = post(
        fs,
        "complete-task",
        "todo.task.completed",
        {"user_id": mallory, "task_id": ids["series-next"], "title": "x"},
        id_=victim_event,
    )
    if reused.status_code != 422 or "Secret plans" in reused.text or victim in reused.text:
        failures.append(f"reused event identity: {reused.status_code} {reused.text}")
    assert failures == [], "\n".join(failures)
    assert victims(fs, victim) == before, "an attempt changed the victim's items"
    assert [t.model_dump() for t in fs.store.list_tasks(mallory)] == mine
    assert len(fs.mail.received()) == mails, "nobody was reminded"
    record(f"isolation[{fs.kind}]", attempts=len(tried) + 1, victim_untouched=len(tried) + 1)


def test_the_victims_series_reaches_the_ids_mallory_took_first(fs):
    """Mallory creates (and deletes) the ids the victim's series will need next; the
    victim's completion still creates the victim's own next occurrence, once."""
    ids = victim_world(fs)
    victim, mallory = ids["victim"], f"mallory-{uuid.uuid4().hex[:6]}"
    nxt = ids["series-next"]
    done = post(fs, "complete-task", "todo.task.completed", {"user_id": victim, "task_id": nxt})
    following = parse_http(dict(done.headers), done.content)
    upcoming = tasks.next_task_id(
        ids["series"], datetime.fromisoformat(following.data["due_at"]) + timedelta(days=1)
    )
    for type_ in ("todo.task.created", "todo.task.deleted"):
        squat = {"user_id": mallory, "task_id": upcoming, "title": "squat"}
        assert post(fs, "schedule-next", type_, squat).status_code == 202
    headers = {k: v for k, v in done.headers.items() if k.startswith("ce-")}
    headers["content-type"] = "application/json"
    for _ in range(2):  # delivered twice: one occurrence
        answer = fs.caller.post(fs.url("schedule-next"), headers=headers, content=done.content)
        assert answer.status_code == 200, answer.text
    made = [t for t in fs.store.list_tasks(victim) if t.parent_task_id == nxt]
    assert [t.task_id for t in made] == [upcoming]
    assert made[0].status.value == "open" and made[0].title == "Secret plans"
