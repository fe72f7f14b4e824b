"""A crash at every step of an event's unit of work leaves nothing or everything, on both
backends, for every event type that writes; the redelivery then does it exactly once and
answers as a delivery that never crashed did.

For each backend and each writing event (`todo.task.created`, `todo.occurrence.requested`
and `todo.reminder.snoozed` in schedule-next; `todo.task.completed` and
`todo.occurrence.skipped` in complete-task), one delivery that is not crashed counts the
store calls the event makes and what each call does inside (its SQLite statements, its
DynamoDB requests): in reply mode (no K_SINK, the emitted event is the answer) one
`get_many` and one `commit`; in sink mode (for the three that emit) a second `commit`
after the events went to K_SINK, marking them out. Then, on a fresh store each time, the
event is delivered by a process of its own that ends with `os._exit` at one point of that
path (`crash_zygote.py`; the functions' code is untouched, the wrapper replaces the
backend of the Store their `Services` opened):

- before and after each store call: after the read and before the commit is where the
  todo app's API is told of a new occurrence (backend mode, occurrence requested), after
  the commit and before the marking commit where the events go to the sink (sink mode);
- inside each call: SQLite, as each statement of the call begins (BEGIN IMMEDIATE, every
  conditional write, COMMIT); DynamoDB, after each request reached moto and moto answered,
  before the client has read the answer (a proxy in the crashing process, between its
  client and moto, exits instead of passing the answer on). A crash after the request is
  sent and before moto has answered is left out: whether moto then applies it is a race
  (either outcome is one of the two allowed), so it would prove nothing deterministic that
  these two points do not.

After each crash the store holds exactly what it held before the event (no receipt, no
task, reminder or occurrence changed) or exactly what the delivery that never crashed
left (receipt and every effect; whether the receipt's events are marked out is the
outbox's own later write), never a part. The same event (same source + id) is then
delivered again by a new process: the store ends exactly as the uncrashed delivery left it
(one task or next occurrence, one reminder, one receipt) and the answer is the same:
status, reply event id, type, source and data (not its `time`, which says when it was
answered). In sink mode the emitted event reached the sink at least once, always under its
one id, and the redelivery sends it again exactly when the crash came before it was
marked out.

Concurrency at the event level for created and occurrence requested (N deliveries of one
source + id with equal or different data: one effect, one answer, 422 for other data) is
proven on both backends through the real handlers in
`tests/reliability/test_review_defects.py`
(`test_concurrent_identical_deliveries_answer_alike_with_one_effect`,
`test_concurrent_deliveries_of_one_id_with_different_data_have_one_winner`); this module
races the other three writing events the same way, from RACERS processes of their own
(`test_concurrent_deliveries_of_one_event_have_one_effect_and_one_answer`). At the store
level: `test_store_commit.py`. SIGKILLs at random moments of whole stacks:
`tests/reliability/test_crash.py`.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from crash_zygote import CRASH
from store_helpers import fresh_table

from harness import cloud_event
from nextup.envelope import event_key, parse_http
from nextup.store import Store, open_store, receipt_ref
from nextup.store.dynamodb import DynamoBackend, make_client
from nextup_dev.moto import AWS_TEST_ENV
from nextup_dev.recorder import HttpRecorder
from nextup_dev.stores import DYNAMODB, SQLITE, STORE_KINDS

HERE = Path(__file__).resolve().parent
SOURCE = "/crash-points"
USER = "ada"
SENT = "2030-03-04T08:00:00Z"  # every event's `time`: answers do not depend on the clock
FAR = datetime(2100, 1, 1, tzinfo=UTC)
JOB_TIMEOUT = 60.0

SERIES = {
    "user_id": USER,
    "task_id": "plants",
    "title": "Water the plants",
    "due_at": "2030-03-05T09:00:00",
    "timezone": "Europe/Berlin",
    "recurrence": {"rule": "FREQ=DAILY"},
    "reminder": {"before": "PT15M"},
}
OCCURRENCE = {
    **SERIES,
    "series_id": "plants",
    "series_start": "2030-03-05T09:00:00",
    "occurrence": 0,
    "completed_at": "2030-03-05T09:30:00",
}


def event(type_: str, data: dict, id_: str) -> tuple[dict, str]:
    headers, body = cloud_event(type_, data, id_=id_, source=SOURCE, time=SENT)
    return headers, body.decode()


SEED = ("schedule-next", *event("todo.task.created", SERIES, "seed"))


@dataclass(frozen=True)
class Case:
    """One writing event: the function it goes to, the event, what is there before it
    (delivered first, uncrashed), and the tasks and reminders it leaves."""

    function: str
    type: str
    data: dict
    seeds: tuple = ()
    tasks: int = 1
    reminders: int = 1


CASES = {
    "created": Case("schedule-next", "todo.task.created", SERIES),
    "completed": Case(
        "complete-task",
        "todo.task.completed",
        {"user_id": USER, "task_id": "plants", "completed_at": "2030-03-05T09:30:00"},
        seeds=(SEED,),
    ),
    "skipped": Case(
        "complete-task",
        "todo.occurrence.skipped",
        {"user_id": USER, "task_id": "plants", "skipped_at": "2030-03-05T08:00:00"},
        seeds=(SEED,),
    ),
    "occurrence": Case("schedule-next", "todo.occurrence.requested", OCCURRENCE),
    "snoozed": Case(
        "schedule-next",
        "todo.reminder.snoozed",
        {"user_id": USER, "task_id": "plants", "until": "2030-03-05T10:00:00"},
        seeds=(SEED,),
    ),
}


class Zygote:
    """`crash_zygote.py` in a process of its own: each `run` forks a fresh process."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.jobs = 0
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "crash_zygote.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], JOB_TIMEOUT)
        assert ready, "the zygote did not answer in time"
        line = self.process.stdout.readline()
        assert line, f"the zygote ended ({self.process.poll()})"
        return line.strip()

    def _job(self, job: dict[str, Any]) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        return json.loads(self._line())["exit"]

    def _out(self) -> Path:
        self.jobs += 1
        return self.tmp / f"job-{self.jobs}.json"

    def run(
        self, url: str, env: dict[str, str], deliveries: list, crash: list | None
    ) -> tuple[int, dict | None]:
        """Deliver in a fresh process; (its exit code, what it saw if it was not crashed)."""
        out = self._out()
        env = {**env, "NEXTUP_STORE_URL": url}
        code = self._job({"env": env, "deliveries": deliveries, "crash": crash, "out": str(out)})
        return code, json.loads(out.read_text()) if out.exists() else None

    def race(self, url: str, env: dict[str, str], deliveries: list) -> list[dict]:
        """Each delivery from a process of its own, all at once; their answers in order."""
        out = self._out()
        env = {**env, "NEXTUP_STORE_URL": url}
        assert self._job({"env": env, "race": deliveries, "out": str(out)}) == 0
        return [json.loads(Path(f"{out}.{i}").read_text()) for i in range(len(deliveries))]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory):
    started = Zygote(tmp_path_factory.mktemp("zygote"))
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(params=STORE_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == DYNAMODB:
        request.getfixturevalue("dynamodb_endpoint")
    return request.param


class Stores:
    """A fresh store of one kind for each run, what the child needs to reach it, and the
    test's own view of each (DynamoDB: one client for every table)."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.tmp = tmp
        self.env: dict[str, str] = {}
        self.opened: dict[str, Store] = {}
        self.client = None
        if kind == DYNAMODB:
            self.env = {
                **AWS_TEST_ENV,
                "AWS_ENDPOINT_URL_DYNAMODB": os.environ["AWS_ENDPOINT_URL_DYNAMODB"],
            }
            self.client = make_client()

    def fresh(self) -> str:
        if self.kind == SQLITE:
            url = f"sqlite:///{self.tmp / f'store-{len(self.opened)}.db'}"
            store = open_store(url)
        else:
            table = fresh_table()
            url = f"dynamodb://{table}"
            store = Store(DynamoBackend(table, client=self.client))
        store.init()
        self.opened[url] = store
        return url

    def snapshot(self, url: str, key: str) -> dict[str, Any]:
        """Everything of the user's and of the event's in the store, without the times
        that say when it was written (a receipt's `created_at`, its events' `time`)."""
        store = self.opened[url]
        tasks = [t.model_dump(mode="json") for t in store.list_tasks(USER)]
        kept = [r.model_dump(mode="json") for r in store.list_reminders(USER)]
        due = [(r.user_id, r.task_id) for r in store.due_reminders(FAR, limit=1000).items]
        [receipt] = store.load([receipt_ref(key)])
        if receipt is not None:
            receipt = receipt.model_dump(mode="json", exclude={"created_at", "expires_at"})
            for stored in receipt["events"]:
                stored["attributes"].pop("time", None)
        return {"tasks": tasks, "reminders": kept, "due": due, "receipt": receipt}

    def close(self) -> None:
        for store in self.opened.values():
            store.close()


@pytest.fixture
def stores(kind: str, tmp_path: Path):
    opened = Stores(kind, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def crash_points(kind: str, calls: list[str], steps: list[list[str]]) -> list[list]:
    """Before and after each store call (after one and before the next differ where
    something happens in between: the todo app's API told of a new occurrence, the events
    sent to the sink), and inside each call at each of its statements (SQLite: the first
    is the call's beginning) or requests (DynamoDB)."""
    points: list[list] = [["before", i] for i in range(len(calls))]
    points += [["after", i] for i in range(len(calls))]
    for i, inside in enumerate(steps):
        first = 1 if kind == SQLITE else 0
        points += [["during", i, j] for j in range(first, len(inside))]
    return points


@pytest.fixture(scope="module")
def peer():
    """The sink (K_SINK, path /sink) and the todo app's API (/api/tasks): one recorder."""
    recorder = HttpRecorder().start()
    try:
        yield recorder
    finally:
        recorder.stop()


EMITTING = ("completed", "skipped", "occurrence")
RUNS = [
    *((name, "reply") for name in CASES),
    *((name, "sink") for name in EMITTING),
    ("occurrence", "backend"),
]


def posted(peer: HttpRecorder, path: str, since: int) -> list:
    return [r for r in peer.requests[since:] if r.path == path]


@pytest.mark.parametrize(("name", "mode"), RUNS, ids=[f"{n}-{m}" for n, m in RUNS])
def test_a_crash_at_any_step_leaves_nothing_or_everything_and_the_redelivery_does_it_once(
    zygote: Zygote, peer: HttpRecorder, stores: Stores, kind: str, name: str, mode: str
) -> None:
    """`reply`: without K_SINK, the emitted event is the answer (one read, one commit).
    `sink`: the events go to K_SINK after the commit, and a second commit marks them out
    (the receipt is the outbox): a crash before they are marked sends them again.
    `backend`: a new occurrence is posted to the todo app's API (idempotency key) after
    the read and before the commit: a crash in between posts it again, under that key."""
    case = CASES[name]
    if mode == "sink":
        stores.env["K_SINK"] = f"{peer.url}/sink"
    elif mode == "backend":
        stores.env["NEXTUP_BACKEND_URL"] = peer.url
    headers, body = event(case.type, case.data, f"{name}-1")
    key = event_key(parse_http(headers, body.encode()))
    deliveries = [*case.seeds, (case.function, headers, body)]

    # The delivery that never crashes: its path, its answer, what it leaves.
    url = stores.fresh()
    if case.seeds:
        code, _ = zygote.run(url, stores.env, list(case.seeds), None)
        assert code == 0
    before = stores.snapshot(url, key)
    first = len(peer.requests)
    code, seen = zygote.run(url, stores.env, [(case.function, headers, body)], None)
    assert code == 0 and seen is not None
    answer = seen["answers"][-1]
    assert answer["status"] in (200, 202), answer
    after = stores.snapshot(url, key)
    assert before["receipt"] is None and after["receipt"] is not None
    assert before != {**after, "receipt": None}, "the event changes something besides its receipt"
    assert len(after["tasks"]) == case.tasks and len(after["reminders"]) == case.reminders
    emitted = json.loads(answer["body"]).get("emitted", []) if mode == "sink" else []
    if mode == "sink":
        assert answer["status"] == 202 and len(emitted) == 1, answer
        assert seen["calls"] == ["get_many", "commit", "commit"], "read, commit, mark sent"
    else:
        assert seen["calls"] == ["get_many", "commit"], "one read, one commit"
    [told] = posted(peer, "/api/tasks", first) if mode == "backend" else [None]

    outcomes: dict[str, list] = {"nothing": [], "everything": []}
    for point in crash_points(kind, seen["calls"], seen["steps"]):
        url = stores.fresh()
        first = len(peer.requests)
        code, _ = zygote.run(url, stores.env, deliveries, point)
        assert code == CRASH, (point, code)
        crashed = stores.snapshot(url, key)
        state = snapshot_of(crashed)
        if state == snapshot_of(before):
            outcomes["nothing"].append(point)
        else:
            assert state == snapshot_of(after), (point, "a part of the unit", state, after)
            outcomes["everything"].append(point)
        sent = len(peer.requests)
        code, again = zygote.run(url, stores.env, [(case.function, headers, body)], None)
        assert code == 0 and again is not None
        assert again["answers"][-1] == answer, (point, again["answers"][-1], answer)
        assert stores.snapshot(url, key) == after, (point, "the redelivery did it once")
        if mode == "sink":
            # Out at least once, always under the one id; sent again by the redelivery
            # unless the crashed delivery had marked them out.
            out = [r.headers.get("ce-id") for r in posted(peer, "/sink", first)]
            again_sent = [r.headers.get("ce-id") for r in posted(peer, "/sink", sent)]
            assert out and set(out) == set(emitted), (point, out)
            marked = crashed["receipt"] is not None and not crashed["receipt"]["unsent"]
            assert again_sent == ([] if marked else emitted), (point, again_sent)
        if mode == "backend":
            # Told at least once, always the same task under the same key; told again by
            # the redelivery exactly when nothing was committed.
            told_all = posted(peer, "/api/tasks", first)
            told_again = posted(peer, "/api/tasks", sent)
            assert told_all, point
            for request in told_all:
                assert request.headers["idempotency-key"] == told.headers["idempotency-key"]
                assert request.json() == told.json(), point
            assert len(told_again) == (1 if crashed["receipt"] is None else 0), point
    # The crashes fell on both sides of the commit, and where they must.
    assert ["before", 1] in outcomes["nothing"] and ["after", 1] in outcomes["everything"]
    if kind == SQLITE:
        assert ["during", 1, len(seen["steps"][1]) - 1] in outcomes["nothing"]  # before COMMIT
    else:
        assert ["during", 1, 0] in outcomes["everything"]  # TransactWriteItems done, unread
    print(name, mode, kind, {side: len(points) for side, points in outcomes.items()})


def snapshot_of(state: dict[str, Any]) -> dict[str, Any]:
    """`state` without whether the receipt's events are known to be out (and the version
    that marking them bumps): the unit of work is the receipt and the effects; marking its
    events sent is the outbox's own write, after it."""
    if state["receipt"] is None:
        return state
    outbox = ("unsent", "version")  # the marking write bumps the receipt's version
    return {**state, "receipt": {k: v for k, v in state["receipt"].items() if k not in outbox}}


# -- concurrent deliveries of one event, from processes of their own ---------------------

RACERS = 12
# Events whose concurrent deliveries test_review_defects.py does not already race.
RACED = {
    "completed": ("completed_at", lambda v: f"2030-03-05T09:{30 + v}:00"),
    "skipped": ("skipped_at", lambda v: f"2030-03-05T08:{v:02}:00"),
    "snoozed": ("until", lambda v: f"2030-03-05T{10 + v}:00:00"),
}


@pytest.mark.parametrize("same", [True, False], ids=["equal", "different"])
@pytest.mark.parametrize("name", list(RACED))
def test_concurrent_deliveries_of_one_event_have_one_effect_and_one_answer(
    zygote: Zygote, stores: Stores, kind: str, name: str, same: bool
) -> None:
    """RACERS processes deliver one source + id at once, with equal data or with 2-3
    variants of it: the store ends as one uncontested delivery of the winner's data
    leaves it, the winner's copies all get that delivery's answer, and every other
    variant 422 naming `id` (CloudEvents source + id must be unique)."""
    case = CASES[name]
    field_name, value = RACED[name]
    variants = 1 if same else 3
    assigned = [i % variants for i in range(RACERS)]

    def delivery(variant: int) -> tuple[str, dict, str]:
        data = {**case.data, field_name: value(variant)}
        return (case.function, *event(case.type, data, f"{name}-raced"))

    key = event_key(parse_http(delivery(0)[1], delivery(0)[2].encode()))
    url = stores.fresh()
    code, _ = zygote.run(url, stores.env, list(case.seeds), None)
    assert code == 0
    answers = zygote.race(url, stores.env, [delivery(v) for v in assigned])
    statuses = [a["status"] for a in answers]
    winners = [i for i, a in enumerate(answers) if a["status"] != 422]
    assert winners, statuses
    [winner] = {assigned[i] for i in winners}
    assert winners == [i for i, v in enumerate(assigned) if v == winner], (assigned, statuses)
    for answer in answers:
        if answer["status"] == 422:
            assert json.loads(answer["body"])["field"] == "id", answer

    # One uncontested delivery of the winner's data, on a store of its own.
    alone = stores.fresh()
    code, seen = zygote.run(alone, stores.env, [*case.seeds, delivery(winner)], None)
    assert code == 0 and seen is not None
    assert all(answers[i] == seen["answers"][-1] for i in winners), (answers, seen)
    assert stores.snapshot(url, key) == stores.snapshot(alone, key)
