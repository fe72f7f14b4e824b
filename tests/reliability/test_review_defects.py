"""Review defects: deduplication on source + id, per-user task ids, out-of-order updates,
and times outside the years a task may have. The functions in-process (the fast layer)
over each store backend (SQLite file, DynamoDB on moto server). Clients that go away
mid-request are in test_review_aborts.py (real sockets to function processes), the
sweep's poisoned recipients in test_review_sweep.py, time zones in test_review_zones.py.

Why each test fails on the pre-fix code (c97ba0d; reasoned from its source, not run):

- test_concurrent_deliveries_of_one_id_with_different_data_have_one_winner and
  test_concurrent_identical_deliveries_answer_alike_with_one_effect: c97ba0d checked the
  receipt, ran the handler, then wrote the receipt (check-then-act, `App.handle` /
  `remember`), with no fingerprint of the data. Twenty concurrent deliveries all found
  no receipt and all ran: deliveries with different `due_at` created one next
  occurrence each (different deterministic ids), so "exactly one task" fails, and every
  one answered 200 with its own reply, never 422. Identical deliveries each answered on
  their own (the reply of a losing create was "replayed", the receipt overwritten).
- test_an_id_reused_for_other_data_is_refused_and_changes_nothing: receipts were scoped
  by user (`scope = data.user_id`), so the same source + id from another user was a new
  event and created that user's occurrence (200, not 422); for the same user, another
  type or other data was answered with the first event's stored reply (a replay, 200),
  never 422.
- test_another_users_task_id_acts_on_the_senders_own (hypothesis): c97ba0d refused ids
  owned by someone else (`refuse_foreign`, `refuse_squatting`: 403 "belongs to another
  user"), so created/deleted/completed-with-fields answered 403 instead of 202 on the
  sender's own id, and the 403 told the sender that the id exists.
- test_out_of_order_updates_end_with_the_newest (hypothesis): c97ba0d's `_update_step`
  applied every update in arrival order (no `changed_at`), so any order in which an
  older update arrives last leaves the older title (and answers "updated", not "stale").
- test_completion_times_outside_the_years_are_refused_with_nothing_stored (and its
  hypothesis twin): c97ba0d used `event_time(event)` as the completion time without a
  range check: 0001-01-01 or 9999-12-31 were stored as `completed_at` (202, store
  changed); for a recurring task the occurrence request then carried them, and a
  time near year 9999 overflowed in the recurrence engine (500).
- test_a_series_past_2200_ends: c97ba0d's `next_occurrence` had no `MAX_YEAR` check, so
  the occurrence after 2200-12-31 was created in 2201 (200 "scheduled", not
  "series_ended").
"""

from __future__ import annotations

import functools
import json
import random
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relstack import FunctionSet

from harness import cloud_event, structured_event, wait_until
from nextup.envelope import event_key, parse_http

pytestmark = pytest.mark.fast

SOURCE = "/review"
BERLIN = ZoneInfo("Europe/Berlin")
FEW = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# Reply mode for complete-task and schedule-next (no K_SINK): the emitted event is the
# answer, so its ce-id is visible to the test.
fs = FunctionSet.fixture(
    "fs",
    "review",
    in_process=True,
    http={"limits": httpx.Limits(max_connections=100, max_keepalive_connections=100)},
)


def post(
    fs: FunctionSet,
    function: str,
    type_: str,
    data: dict,
    *,
    id_: str | None = None,
    source: str = SOURCE,
    **extensions: str,
) -> httpx.Response:
    headers, body = cloud_event(
        type_, data, id_=id_ or uuid.uuid4().hex, source=source, **extensions
    )
    return fs.http.post(fs.url(function), headers=headers, content=body)


def reply_to(function_answer: httpx.Response) -> tuple[dict, bytes]:
    """The event a function answered with, as headers to deliver it onwards."""
    headers = {k: v for k, v in function_answer.headers.items() if k.startswith("ce-")}
    headers["content-type"] = "application/json"
    return headers, function_answer.content


def tasks_of(fs: FunctionSet, user: str) -> list[dict]:
    return [t.model_dump(mode="json") for t in fs.store.list_tasks(user)]


def items_of(fs: FunctionSet, user: str) -> tuple[list, list]:
    return tasks_of(fs, user), [r.model_dump(mode="json") for r in fs.store.list_reminders(user)]


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls in threads released together by a barrier; their answers in order."""
    barrier = threading.Barrier(len(calls))
    answers: list[httpx.Response | BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            answers[i] = calls[i]()
        except BaseException as exc:  # reported below, in the test's thread
            answers[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [a for a in answers if not isinstance(a, httpx.Response)]
    assert not failed, failed
    return answers  # type: ignore[return-value]


# -- deduplication on source + id ---------------------------------------------------------

COPIES = 20


def occurrence(user: str, series: str, due: datetime, title: str = "Water the plants") -> dict:
    """A completed occurrence of a daily 09:00 Berlin series, naive times as the seed sends."""
    return {
        "user_id": user,
        "task_id": f"{series}@{due:%Y%m%d}",
        "series_id": series,
        "series_start": "2026-01-05T09:00:00",
        "occurrence": (due - datetime(2026, 1, 5, 9)).days,
        "title": title,
        "due_at": due.isoformat(),
        "completed_at": (due + timedelta(minutes=30)).isoformat(),
        "timezone": "Europe/Berlin",
        "recurrence": {"rule": "FREQ=DAILY"},
    }


def created(user: str, task: str, title: str) -> dict:
    return {"user_id": user, "task_id": task, "title": title}


def race_case(kind: str, user: str, variant: int) -> tuple[str, str, dict]:
    """(function, type, data) of one variant of the contested event."""
    if kind == "occurrence":
        due = datetime(2026, 1, 5, 9) + timedelta(days=3 * variant + 1)
        return "schedule-next", "todo.occurrence.requested", occurrence(user, "plants", due)
    return "schedule-next", "todo.task.created", created(user, "contested", f"title {variant}")


@pytest.mark.parametrize("kind", ["occurrence", "created"])
def test_concurrent_deliveries_of_one_id_with_different_data_have_one_winner(fs, kind):
    rng = random.Random(f"{fs.kind}-{kind}")
    for round_ in range(3):
        user = f"race-{uuid.uuid4().hex[:8]}"
        event_id = f"contested-{uuid.uuid4().hex[:8]}"
        variants = rng.randint(2, 5)
        assigned = [i % variants for i in range(COPIES)]  # every variant at least once
        rng.shuffle(assigned)
        cases = [race_case(kind, user, v) for v in assigned]
        answers = at_once(
            [functools.partial(post, fs, *c, id_=event_id, source=SOURCE) for c in cases]
        )
        statuses = [a.status_code for a in answers]
        won = 200 if kind == "occurrence" else 202
        assert set(statuses) <= {won, 422}, (round_, [(a.status_code, a.text) for a in answers])
        winners = [i for i, s in enumerate(statuses) if s == won]
        assert winners, "someone wins"
        [winner] = {assigned[i] for i in winners}
        assert winners == [i for i, v in enumerate(assigned) if v == winner], (
            "exactly the copies of the winner's data get the winner's answer",
            assigned,
            statuses,
        )
        for answer in answers:
            if answer.status_code == 422:
                assert answer.json()["field"] == "id", answer.text
        assert len({answers[i].content for i in winners}) == 1, "one answer, the first"
        stored = tasks_of(fs, user)
        assert len(stored) == 1, stored
        if kind == "occurrence":
            assert len({answers[i].headers["ce-id"] for i in winners}) == 1
            reply = parse_http(dict(answers[winners[0]].headers), answers[winners[0]].content)
            assert reply["type"] == "todo.task.scheduled"
            expected = datetime.fromisoformat(cases[winners[0]][2]["due_at"]).replace(
                tzinfo=BERLIN
            ) + timedelta(days=1)
            assert datetime.fromisoformat(stored[0]["due_at"]) == expected
            assert reply.data["task_id"] == stored[0]["task_id"]
        else:
            assert stored[0]["title"] == f"title {winner}"
        # Afterwards too: the winner's data is a redelivery, the others are refused.
        again = [post(fs, *race_case(kind, user, v), id_=event_id) for v in range(variants)]
        for v, answer in enumerate(again):
            if v == winner:
                assert answer.status_code == won and answer.content == answers[winners[0]].content
            else:
                assert answer.status_code == 422 and answer.json()["field"] == "id"
        assert tasks_of(fs, user) == stored


@pytest.mark.parametrize("kind", ["occurrence", "created"])
def test_concurrent_identical_deliveries_answer_alike_with_one_effect(fs, kind):
    for _ in range(2):
        user = f"same-{uuid.uuid4().hex[:8]}"
        event_id = f"same-{uuid.uuid4().hex[:8]}"
        function, type_, data = race_case(kind, user, 1)
        same = functools.partial(post, fs, function, type_, data, id_=event_id)
        answers = at_once([same] * COPIES)
        won = 200 if kind == "occurrence" else 202
        assert [a.status_code for a in answers] == [won] * COPIES, [a.text for a in answers]
        assert len({a.content for a in answers}) == 1
        # The first answer, whole: the same event, down to its id and time.
        ce = [
            tuple(sorted((k, v) for k, v in a.headers.items() if k.startswith("ce-")))
            for a in answers
        ]
        assert len(set(ce)) == 1, set(ce)
        if kind == "occurrence":
            assert dict(ce[0])["ce-id"]
        [task] = tasks_of(fs, user)
        assert task["version"] == 1, "written once"
        # One delivery did it; every other one was told apart as a duplicate.
        assert sorted(outcomes(fs, function, event_id, COPIES)) == sorted(
            ["scheduled" if kind == "occurrence" else "registered"] + ["duplicate"] * (COPIES - 1)
        )


def outcomes(fs: FunctionSet, function: str, event_id: str, count: int) -> list[str]:
    """The logged outcome of each delivery of the event (once all `count` are logged)."""
    process = fs.functions[function]

    def logged() -> list[str]:
        lines = process.log_lines()
        return [line["outcome"] for line in lines if line.get("event_id") == event_id]

    return wait_until(lambda: len(logged()) >= count and logged(), message="the log lines")


def test_an_id_reused_for_other_data_is_refused_and_changes_nothing(fs):
    user, other = f"owner-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    event_id = f"reused-{uuid.uuid4().hex[:8]}"
    due = datetime(2026, 1, 12, 9)
    data = occurrence(user, "plants", due)
    first = post(fs, "schedule-next", "todo.occurrence.requested", data, id_=event_id)
    assert first.status_code == 200, first.text
    before = fs.dump()
    occurred = "todo.occurrence.requested"
    weekly = {"rule": "FREQ=WEEKLY"}
    reuses = [
        ("schedule-next", occurred, {**data, "user_id": other}),
        ("schedule-next", occurred, {**data, "title": "another title"}),
        ("schedule-next", occurred, occurrence(user, "plants", due + timedelta(days=1))),
        ("schedule-next", occurred, {**data, "recurrence": weekly}),
        ("schedule-next", "todo.task.created", created(user, "plants", "x")),
        ("schedule-next", "todo.task.created", created(other, "plants", "x")),
        ("schedule-next", "todo.task.deleted", {"user_id": user, "task_id": data["task_id"]}),
        ("schedule-next", "todo.task.updated", {"user_id": other, "task_id": "p", "title": "y"}),
        ("complete-task", "todo.task.completed", {"user_id": user, "task_id": data["task_id"]}),
        ("complete-task", "todo.task.completed", {"user_id": other, "task_id": "p", "title": "z"}),
    ]
    for function, type_, reused in reuses:
        answer = post(fs, function, type_, reused, id_=event_id)
        assert answer.status_code == 422, (type_, reused, answer.status_code, answer.text)
        body = answer.json()
        assert body["field"] == "id" and body["error"], body
        assert user not in answer.text and "plants" not in answer.text, answer.text
    assert fs.dump() == before, "a reused id changed the store"
    assert tasks_of(fs, other) == []
    # The same data is a redelivery, in either content mode: the first answer, same ce-id.
    again = post(fs, "schedule-next", "todo.occurrence.requested", data, id_=event_id)
    headers, body = structured_event("todo.occurrence.requested", data, id_=event_id, source=SOURCE)
    structured = fs.http.post(fs.url("schedule-next"), headers=headers, content=body)
    for answer in (again, structured):
        assert answer.status_code == 200 and answer.headers["ce-id"] == first.headers["ce-id"]
        assert answer.content == first.content
    # The same id from another source is another event: answered on its own, one effect.
    elsewhere = post(
        fs, "schedule-next", "todo.occurrence.requested", data, id_=event_id, source="/elsewhere"
    )
    assert elsewhere.status_code == 200 and elsewhere.headers["ce-id"] != first.headers["ce-id"]
    assert json.loads(elsewhere.content)["task_id"] == json.loads(first.content)["task_id"]
    assert len(tasks_of(fs, user)) == 1


# -- task ids are per user -------------------------------------------------------------------


@pytest.fixture(scope="module")
def victim(fs) -> dict:
    """A victim with a plain task, a recurring one with its next occurrence, and a
    reminder waiting for tomorrow."""
    user = f"victim-{uuid.uuid4().hex[:6]}"
    due = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    ids = [f"v-{uuid.uuid4().hex[:6]}", f"vs-{uuid.uuid4().hex[:6]}"]
    for n, task in enumerate(ids):
        data = {
            "user_id": user,
            "task_id": task,
            "title": "Secret plans",
            "due_at": due.isoformat(),
            "reminder": {"before": "PT5M"},
            "notify": {"email": "victim@example.com"},
        }
        if n:
            data["recurrence"] = {"rule": "FREQ=DAILY"}
        assert post(fs, "schedule-next", "todo.task.created", data).status_code == 202
    done = post(fs, "complete-task", "todo.task.completed", {"user_id": user, "task_id": ids[1]})
    assert done.status_code == 200, done.text
    headers, body = reply_to(done)
    nxt = fs.http.post(fs.url("schedule-next"), headers=headers, content=body)
    assert nxt.status_code == 200, nxt.text
    ids.append(json.loads(nxt.content)["task_id"])
    return {"user": user, "ids": ids}


# action -> (function, type, data beyond the ids, status expected, whether the sender
# ends up with a task of that id)
ACTIONS = {
    "completed": ("complete-task", "todo.task.completed", {}, 404, False),
    "completed+fields": ("complete-task", "todo.task.completed", {"title": "mine"}, 202, True),
    "updated": ("schedule-next", "todo.task.updated", {}, 404, False),
    "updated+fields": (
        "schedule-next",
        "todo.task.updated",
        {"title": "mine", "notify": {"email": "m@example.com"}},
        404,
        False,
    ),
    "created": ("schedule-next", "todo.task.created", {}, 202, True),
    "created+fields": ("schedule-next", "todo.task.created", {"title": "squat"}, 202, True),
    "deleted": ("schedule-next", "todo.task.deleted", {}, 202, True),
    "reminder.due": ("send-reminder", "todo.reminder.due", {}, 202, False),
}


@FEW
@given(action=st.sampled_from(sorted(ACTIONS)), which=st.integers(0, 2))
def test_another_users_task_id_acts_on_the_senders_own(fs, victim, action, which):
    function, type_, extra, status, owned = ACTIONS[action]
    mallory = f"mallory-{uuid.uuid4().hex[:8]}"
    task = victim["ids"][which]
    before = items_of(fs, victim["user"])
    mails = len(fs.mail.received())
    answer = post(fs, function, type_, {"user_id": mallory, "task_id": task, **extra})
    assert answer.status_code == status, (action, answer.text)
    assert victim["user"] not in answer.text and "Secret" not in answer.text, answer.text
    # The answer an id nobody has gets, word for word (but for the id).
    nobody = f"nobody-{uuid.uuid4().hex[:6]}"
    control = post(fs, function, type_, {"user_id": f"{mallory}-2", "task_id": nobody, **extra})
    assert control.status_code == status

    def masked(response: httpx.Response) -> object:
        text = response.text.replace(task, "<id>").replace(nobody, "<id>")
        body = json.loads(text)
        return {k: v for k, v in body.items() if k not in ("remind_at", "completed_at")}

    assert masked(answer) == masked(control)
    assert items_of(fs, victim["user"]) == before, "the victim's items changed"
    mine = tasks_of(fs, mallory)
    assert [t["task_id"] for t in mine] == ([task] if owned else [])
    assert len(fs.mail.received()) == mails


# -- out-of-order updates --------------------------------------------------------------------

BASE = datetime(2026, 6, 1, 12, tzinfo=UTC)
OFFSETS = ["Z", "+00:00", "+05:30", "-08:00", "+14:00"]


def rfc3339(instant: datetime, shown_as: str) -> str:
    """The same instant written with another offset (or Z)."""
    if shown_as == "Z":
        return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
    sign = 1 if shown_as[0] == "+" else -1
    offset = timedelta(hours=int(shown_as[1:3]), minutes=int(shown_as[4:6]))
    return instant.astimezone(timezone(sign * offset)).isoformat()


def key_of(event_id: str, source: str = SOURCE) -> str:
    headers, body = cloud_event("todo.task.updated", {}, id_=event_id, source=source)
    return event_key(parse_http(headers, body))


@FEW
@given(
    minutes=st.lists(st.integers(-3, 6), min_size=2, max_size=8),
    shown=st.lists(st.sampled_from(OFFSETS), min_size=8, max_size=8),
    order=st.randoms(use_true_random=False),
)
def test_out_of_order_updates_end_with_the_newest(fs, minutes, shown, order):
    user, task = f"ooo-{uuid.uuid4().hex[:8]}", "t"
    created_id = uuid.uuid4().hex
    create = post(
        fs,
        "schedule-next",
        "todo.task.created",
        {"user_id": user, "task_id": task, "title": "created"},
        id_=created_id,
        time=rfc3339(BASE, "Z"),
    )
    assert create.status_code == 202, create.text
    updates = [
        {
            "id": uuid.uuid4().hex,
            "at": BASE + timedelta(minutes=m),
            "shown": shown[i],
            "title": f"update {i}",
        }
        for i, m in enumerate(minutes)
    ]
    arrival = list(range(len(updates)))
    order.shuffle(arrival)

    def send(u: dict):
        """Update `u` delivered, stamped with its own time as its producer shows it."""
        return post(
            fs,
            "schedule-next",
            "todo.task.updated",
            {"user_id": user, "task_id": task, "title": u["title"]},
            id_=u["id"],
            time=rfc3339(u["at"], u["shown"]),
        )

    # The model: the newest (time, key) applied so far; an older one changes nothing.
    newest = (BASE, key_of(created_id), "created")
    expected, answered = {}, {}
    for i in arrival:
        u = updates[i]
        answer = send(u)
        assert answer.status_code == 202, answer.text
        answered[i] = answer.json()["outcome"]
        candidate = (u["at"], key_of(u["id"]), u["title"])
        if candidate[:2] > newest[:2]:
            expected[i], newest = "updated", candidate
        else:
            expected[i] = "stale"
    assert answered == expected, ([(updates[i]["at"], updates[i]["id"]) for i in arrival],)
    [stored] = tasks_of(fs, user)
    assert stored["title"] == newest[2]
    assert (
        stored["title"]
        == max(
            [(BASE, key_of(created_id), "created")]
            + [(u["at"], key_of(u["id"]), u["title"]) for u in updates]
        )[2]
    )
    # Every update again, in another order: each gets its first answer, nothing changes.
    order.shuffle(arrival)
    for i in arrival:
        u = updates[i]
        again = send(u)
        assert again.status_code == 202 and again.json()["outcome"] == answered[i]
    assert tasks_of(fs, user) == [stored]


# -- times outside the years a task may have ---------------------------------------------------

OUT_OF_RANGE = [
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1899-12-31T23:59:59Z",
    "2201-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:30:00+01:00",
    "2201-01-01T00:00:00+14:00",
    "1899-12-31T23:59:59.999999-12:00",
]


def a_task(fs: FunctionSet, user: str, recurring: bool) -> str:
    task = f"t-{uuid.uuid4().hex[:6]}"
    data = {"user_id": user, "task_id": task, "title": "Range", "due_at": "2026-12-24T09:00:00"}
    if recurring:
        data.update(timezone="Europe/Berlin", recurrence={"rule": "FREQ=DAILY"})
    assert post(fs, "schedule-next", "todo.task.created", data).status_code == 202
    return task


# variant -> (function, type, data beyond user and task, field named)
REFUSED = {
    "completed": ("complete-task", "todo.task.completed", {}, "time"),
    "completed+completed_at": (
        "complete-task",
        "todo.task.completed",
        {"completed_at": "2026-12-24T10:00:00+01:00"},
        "time",
    ),
    "completed+fields": ("complete-task", "todo.task.completed", {"title": "new"}, "time"),
    "updated": ("schedule-next", "todo.task.updated", {"title": "new"}, "time"),
    "created again": ("schedule-next", "todo.task.created", {"title": "new"}, "time"),
}


def refused(fs, function, type_, data, field, id_=None, **extensions) -> None:
    answer = post(fs, function, type_, data, id_=id_, **extensions)
    assert answer.status_code == 400, (type_, data, extensions, answer.text)
    assert answer.json()["field"] == field, answer.text


@pytest.mark.parametrize("recurring", [False, True], ids=["plain", "recurring"])
def test_completion_times_outside_the_years_are_refused_with_nothing_stored(fs, recurring):
    user = f"range-{uuid.uuid4().hex[:8]}"
    task = a_task(fs, user, recurring)
    before = fs.dump()
    for bad in OUT_OF_RANGE:
        for function, type_, extra, field in REFUSED.values():
            data = {"user_id": user, "task_id": task, **extra}
            refused(fs, function, type_, data, field, time=bad)
        # An unknown task the completion itself would register: refused.
        fresh = {"user_id": user, "task_id": "unknown", "title": "x", "due_at": "2026-12-24T09:00Z"}
        refused(fs, "complete-task", "todo.task.completed", fresh, "time", time=bad)
        # The out-of-range time in data, not in the envelope: the data's field is named.
        for completed_at in (bad, bad.replace("Z", "")[:19]):
            data = {"user_id": user, "task_id": task, "completed_at": completed_at}
            refused(fs, "complete-task", "todo.task.completed", data, "data.completed_at")
            refused(
                fs,
                "complete-task",
                "todo.task.completed",
                data,
                "data.completed_at",
                time="2026-12-24T10:00:00Z",
            )
    assert fs.dump() == before, "a refused event changed the store"
    # Within the years it completes (the control: the task was completable all along).
    done = post(
        fs,
        "complete-task",
        "todo.task.completed",
        {"user_id": user, "task_id": task},
        time="2200-12-31T23:59:59Z",
    )
    assert done.status_code == (200 if recurring else 202), done.text
    assert fs.dump() != before


@FEW
@given(
    year=st.one_of(st.integers(1, 1899), st.integers(2201, 9999)),
    month=st.integers(1, 12),
    day=st.integers(1, 28),
    clock=st.times(),
    shown=st.sampled_from(["Z", "+00:00", "+01:00", "-05:00", "+14:00", "-12:00"]),
    variant=st.sampled_from(sorted(REFUSED)),
)
def test_any_time_outside_the_years_is_refused_naming_time(
    fs, year, month, day, clock, shown, variant
):
    bad = datetime(year, month, day, clock.hour, clock.minute, clock.second).isoformat()
    bad += shown
    user = f"anyrange-{uuid.uuid4().hex[:8]}"
    task = a_task(fs, user, recurring=variant.startswith("completed"))
    function, type_, extra, field = REFUSED[variant]
    data = {"user_id": user, "task_id": task, **extra}
    # The user's partition and the event's receipt (the whole table is dumped in the test
    # above; here, per example, only where a refused event could leave a trace).
    before = items_of(fs, user)
    event_id = uuid.uuid4().hex
    refused(fs, function, type_, data, field, time=bad, id_=event_id)
    assert items_of(fs, user) == before
    assert fs.store.get_receipt(key_of(event_id)) is None


SERIES_END = [
    # (rule, due_at, timezone): the next occurrence is in 2201 in every zone
    ("FREQ=DAILY", "2200-12-31T09:00:00", "Europe/Berlin"),
    ("FREQ=DAILY", "2200-12-31T20:00:00", "America/Los_Angeles"),
    ("FREQ=DAILY", "2200-12-31T12:00:00", None),
    ("FREQ=WEEKLY", "2200-12-28T09:00:00", "Asia/Kathmandu"),
    ("FREQ=MONTHLY", "2200-12-15T09:00:00", "Australia/Lord_Howe"),
    ("FREQ=YEARLY", "2200-06-01T09:00:00", "Pacific/Apia"),
    ("FREQ=HOURLY;INTERVAL=6", "2200-12-31T19:00:00", None),
]


@pytest.mark.parametrize(("rule", "due", "zone"), SERIES_END)
def test_a_series_past_2200_ends(fs, rule, due, zone):
    user = f"end-{uuid.uuid4().hex[:8]}"
    data = {
        "user_id": user,
        "task_id": "last",
        "title": "The last one",
        "due_at": due,
        "recurrence": {"rule": rule},
    }
    if zone:
        data["timezone"] = zone
    assert post(fs, "schedule-next", "todo.task.created", data).status_code == 202
    done = post(fs, "complete-task", "todo.task.completed", {"user_id": user, "task_id": "last"})
    assert done.status_code == 200, done.text
    headers, body = reply_to(done)
    assert headers["ce-type"] == "todo.occurrence.requested"
    before = items_of(fs, user)
    ended = fs.http.post(fs.url("schedule-next"), headers=headers, content=body)
    assert ended.status_code == 202, ended.text
    assert ended.json()["outcome"] == "series_ended", ended.text
    assert items_of(fs, user) == before, "nothing created"
    [task] = before[0]
    assert task["status"] == "completed"
    # The control: the day before, the series goes on into 2200's last days.
    if rule == "FREQ=DAILY":
        earlier = {**json.loads(body), "due_at": due.replace("12-31", "12-30")}
        earlier["task_id"] = "second-last"
        scheduled = post(fs, "schedule-next", "todo.occurrence.requested", earlier)
        assert scheduled.status_code == 200, scheduled.text
        assert json.loads(scheduled.content)["due_at"].startswith("2200-12-31")
