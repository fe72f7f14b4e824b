"""The reminder sweep at scale, over each store backend: hundreds of due reminders cost a
bounded handful of store round trips per hundred (counted at the backend, the `Counting`
wrapper of the store suite), reminders not yet due cost none, and two sweeping processes
mail each reminder exactly once."""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from functionset import start_stack

from harness import FunctionProcess, cloud_event, wait_until
from nextup.reminders import Reminder, ReminderStatus
from nextup.store import Store, open_store
from nextup.store.items import MAX_COMMIT
from nextup.tasks import Task
from peers import STORE_KINDS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "store"))
from test_store_commit import Counting

DUE = 300
NOT_YET = 300
USERS = 30
# Round trips per due reminder a sweep may cost: a page query, a claim, a load, a record
# and an announcement mark per hundred, and records every RECORD_EVERY seconds besides.
MOST_PER_REMINDER = 0.1


def write_reminders(store: Store, prefix: str, count: int, remind_at: datetime) -> list[str]:
    """`count` open tasks across USERS users, each with its reminder at `remind_at`,
    written straight into the store, fifty at a time; their task ids."""
    due_at = remind_at + timedelta(minutes=10)
    models: list = []
    for n in range(count):
        user, task_id = f"{prefix}-{n % USERS}", f"{prefix}.t{n}"
        models.append(
            Task(
                user_id=user,
                task_id=task_id,
                series_id=task_id,
                title="Call mum",
                due_at=due_at,
                reminder={"before": "PT10M"},
                notify={"email": f"{user}@example.com"},
            )
        )
        models.append(Reminder(user_id=user, task_id=task_id, remind_at=remind_at, due_at=due_at))
    for first in range(0, len(models), MAX_COMMIT):
        store.commit(models[first:][:MAX_COMMIT])
    return [model.task_id for model in models[::2]]


def tick(stack, url: str | None = None):
    headers, body = cloud_event("dev.knative.sources.ping", {}, id_=uuid.uuid4().hex)
    if url is None:
        return stack.post("send-reminder", headers, body)
    return stack.caller.post(url, headers=headers, content=body)


def sweep_all(stack, pending: set[str], url: str | None = None) -> int:
    """Tick until no reminder of `pending` is left pending; how many ticks it took."""
    for ticks in range(1, 40):
        response = tick(stack, url)
        assert response.status_code in (200, 202), response.text
        if not pending - {m["X-Nextup-Task"] for m in stack.mail.received()}:
            return ticks
    raise AssertionError("reminders kept waiting")


@pytest.fixture(scope="module", params=STORE_KINDS)
def stack(request, tmp_path_factory, moto_server):
    with pytest.MonkeyPatch.context() as mp:
        s = start_stack(
            request.param,
            tmp_path_factory,
            moto_server,
            mp,
            sink=True,
            names=("send-reminder",),
            in_process=True,
        )
        yield s
        s.stop()


@pytest.fixture
def counted(stack) -> Counting:
    """The sweeping function's store, its backend calls counted."""
    services = stack.functions["send-reminder"].app._services
    store = open_store(stack.store_url)
    store._backend = counting = Counting(store._backend)  # type: ignore[assignment]
    if services._store is not None:
        services._store.close()
    services._store = store
    return counting


@pytest.mark.fast
def test_a_sweep_of_hundreds_costs_a_few_round_trips_per_hundred(stack, counted) -> None:
    now = datetime.now(UTC)
    prefix = uuid.uuid4().hex[:6]
    write_reminders(stack.store, f"later{prefix}", NOT_YET, now + timedelta(hours=1))
    due = set(write_reminders(stack.store, f"due{prefix}", DUE, now - timedelta(minutes=1)))
    sweep_all(stack, due)
    mails = Counter(m["X-Nextup-Task"] for m in stack.mail.received())
    assert all(mails[task_id] == 1 for task_id in due), "each mailed once"
    calls = Counter(counted.calls)
    assert "get" not in calls, f"no reminder or task read on its own: {calls}"
    assert sum(calls.values()) <= DUE * MOST_PER_REMINDER, calls
    # Every due reminder ends sent and announced: out of the due index.
    assert stack.store.due_reminders(datetime.now(UTC)).items == []
    for task_id in list(due)[:10]:
        user = f"due{prefix}-{int(task_id.rsplit('.t', 1)[1]) % USERS}"
        stored = stack.store.get_reminder(user, task_id)
        assert stored.status is ReminderStatus.SENT and stored.announced


@pytest.mark.fast
def test_reminders_not_yet_due_cost_nothing(stack, counted) -> None:
    def one_tick() -> list[str]:
        counted.calls.clear()
        response = tick(stack)
        assert response.status_code in (200, 202), response.text
        return list(counted.calls)

    before = one_tick()
    prefix = uuid.uuid4().hex[:6]
    write_reminders(stack.store, f"later{prefix}", NOT_YET, datetime.now(UTC) + timedelta(hours=2))
    assert one_tick() == before, "the same calls, whatever waits behind the due ones"
    assert before.count("query_due") == 1, before  # besides it: the tick's own receipt


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_two_sweeping_processes_mail_each_reminder_once(kind, tmp_path_factory, moto_server):
    with pytest.MonkeyPatch.context() as mp:
        stack = start_stack(kind, tmp_path_factory, moto_server, mp, sink=True, names=())
        second = None
        try:
            stack.functions["send-reminder"] = FunctionProcess("send-reminder", stack.env).start()
            second = FunctionProcess("send-reminder", stack.env).start()
            due = set(
                write_reminders(stack.store, "race", DUE, datetime.now(UTC) - timedelta(minutes=1))
            )
            urls = [stack.functions["send-reminder"].url, second.url] * 4
            with ThreadPoolExecutor(len(urls)) as pool:
                for response in pool.map(lambda url: tick(stack, url), urls):
                    assert response.status_code in (200, 202), response.text
            sweep_all(stack, due, second.url)
            wait_until(lambda: len(stack.mail.received()) >= DUE, timeout=10)
            mails = Counter(m["X-Nextup-Task"] for m in stack.mail.received())
            assert set(mails) == due
            assert set(mails.values()) == {1}, "no reminder sent by both"
        finally:
            if second is not None:
                second.stop()
            stack.stop()
