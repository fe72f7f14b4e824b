"""One event, one unit of work: `load` reads what it needs in one round trip, `commit`
writes the receipt and every effect together, all or nothing, on both backends; under
concurrency exactly one of many deliveries commits, and a process killed anywhere leaves
each unit either whole or absent."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_helpers import T0, receipt, reminder, task
from test_store_races import RACERS, race

from harness import wait_until
from nextup.store import CommitConflict, Store, open_store, receipt_ref, reminder_ref, task_ref


class Counting:
    """The store's backend with its calls counted: what an event costs in round trips."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        found = getattr(self.backend, name)
        if not callable(found):
            return found

        def counted(*args, **kwargs):
            self.calls.append(name)
            return found(*args, **kwargs)

        return counted


def test_load_reads_every_ref_in_one_round_trip(store: Store) -> None:
    stored, _ = store.create_task(task("alice", "t1", title="one"))
    store.save_reminder(reminder("alice", "t1"))
    store._backend = counting = Counting(store._backend)  # type: ignore[assignment]
    found = store.load(
        [
            task_ref("alice", "t1"),
            receipt_ref("k1"),
            reminder_ref("alice", "t1"),
            task_ref("bob", "t1"),
        ]
    )
    assert counting.calls == ["get_many"]
    assert found[0] == stored and found[1] is None and found[3] is None
    assert found[2].task_id == "t1" and found[2].version == 1


def test_commit_writes_everything_at_the_next_version_in_one_round_trip(store: Store) -> None:
    store._backend = counting = Counting(store._backend)  # type: ignore[assignment]
    written = store.commit([task("alice", "t1"), reminder("alice", "t1"), receipt("k1")])
    assert counting.calls == ["commit"]
    assert [m.version for m in written] == [1, 1, 1]
    found = store.load([task_ref("alice", "t1"), reminder_ref("alice", "t1"), receipt_ref("k1")])
    assert found == written
    again = store.commit([written[0].model_copy(update={"title": "renamed"})])
    assert again[0].version == 2 and store.get_task("alice", "t1").title == "renamed"


@pytest.mark.parametrize("spoiler", [0, 1, 2])
def test_one_condition_that_does_not_hold_writes_nothing(store: Store, spoiler: int) -> None:
    existing, _ = store.create_task(task("alice", "t1", title="before"))
    store.commit([receipt("taken")])
    writes = [
        existing.model_copy(update={"title": "after"}),  # at the version read: holds
        reminder("alice", "t1"),  # new: holds
        receipt("fresh"),  # new: holds
    ]
    if spoiler == 0:
        writes[0] = writes[0].model_copy(update={"version": 7})  # stale
    elif spoiler == 1:
        store.save_reminder(reminder("alice", "t1"))  # someone created it meanwhile
    else:
        writes[2] = receipt("taken")  # another delivery of this event committed
    with pytest.raises(CommitConflict) as lost:
        store.commit(writes)
    assert lost.value.failed in ((spoiler,), ())  # the backend says which, where it can
    assert store.get_task("alice", "t1") == existing, "the task is as it was"
    assert store.get_receipt("fresh", now=T0) is None
    if spoiler != 1:
        assert store.get_reminder("alice", "t1") is None


def test_a_commit_names_each_item_once(store: Store) -> None:
    with pytest.raises(ValueError, match="once"):
        store.commit([task("alice", "t1"), task("alice", "t1", title="again")])
    with pytest.raises(ValueError):
        store.commit([])


@pytest.mark.parametrize("same_data", [True, False])
def test_of_many_concurrent_deliveries_of_one_event_exactly_one_commits(
    store: Store, same_data: bool
) -> None:
    """Each delivery reads (nothing yet), decides, and commits the receipt with its next
    occurrence; with equal or different data, one commit lands and its effect alone."""

    def deliver(i: int) -> str:
        title = "the one" if same_data else f"racer {i}"
        [found] = store.load([receipt_ref("event-1")])
        if found is not None:
            return "replayed"
        store.commit([receipt("event-1", racer=i), task("alice", "next", title=title)])
        return f"committed {i}"

    results = race(deliver)
    committed = [r for r in results if isinstance(r, str) and r.startswith("committed")]
    assert len(committed) == 1, results
    assert all(
        isinstance(r, CommitConflict) or r == "replayed" for r in results if r not in committed
    )
    winner = int(committed[0].split()[1])
    assert store.get_receipt("event-1", now=T0).body == {"racer": winner}
    assert store.get_task("alice", "next").title == ("the one" if same_data else f"racer {winner}")
    assert store.get_task("alice", "next").version == 1


def test_concurrent_events_on_one_task_each_apply_once_by_reading_again(store: Store) -> None:
    """Different events changing the same task: a lost race reads again and decides again,
    so every event's change lands exactly once and the versions count them."""
    store.create_task(task("alice", "t1", title=""))

    def deliver(i: int) -> int:
        rounds = 0
        while True:
            rounds += 1
            current, seen = store.load([task_ref("alice", "t1"), receipt_ref(f"e{i}")])
            if seen is not None:
                return rounds
            changed = current.model_copy(update={"title": current.title + f"<{i}>"})
            try:
                store.commit([changed, receipt(f"e{i}")])
                return rounds
            except CommitConflict:
                continue

    race(deliver)
    final = store.get_task("alice", "t1")
    assert final.version == RACERS + 1
    assert sorted(final.title[1:-1].split("><"), key=int) == [str(i) for i in range(RACERS)]
    assert all(store.get_receipt(f"e{i}", now=T0) for i in range(RACERS))


CRASHER = """
import sys
from datetime import datetime, timedelta, UTC
from nextup.store import open_store, Receipt
from nextup.tasks import Task
from nextup.reminders import Reminder

store = open_store(sys.argv[1])
first = int(sys.argv[2])
at = datetime(2030, 1, 1, tzinfo=UTC)
print("ready", flush=True)
for n in range(first, first + 100000):
    store.commit([
        Task(user_id="crash", task_id=f"t{n}", series_id=f"t{n}", title="x" * 200),
        Reminder(user_id="crash", task_id=f"t{n}", remind_at=at),
        Receipt(key=f"e{n}", status=202, created_at=at, expires_at=at + timedelta(days=1)),
    ])
"""


def test_a_process_killed_anywhere_leaves_each_unit_whole_or_absent(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    """SIGKILL a writer at random moments, many times: every event's receipt, task and
    reminder are all there or none is (nothing half-done for a redelivery to trip on)."""
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    starts = []
    for round_ in range(6):
        first = round_ * 100000
        starts.append(first)
        writer = subprocess.Popen(
            [sys.executable, str(script), store_url, str(first)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        # Let it commit a few first, then kill it at a random moment.
        while not store.get_receipt(f"e{first + 3}", now=T0) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)

    def settled() -> tuple[set[str], set[str]] | None:
        """What the store holds, once a request the writer sent before it died is done
        (the server finishes it on its own): two reads in a row that agree."""
        first = (
            {t.task_id for t in store.list_tasks("crash")},
            {r.task_id for r in store.list_reminders("crash")},
        )
        again = (
            {t.task_id for t in store.list_tasks("crash")},
            {r.task_id for r in store.list_reminders("crash")},
        )
        return first if first == again else None

    tasks, kept = wait_until(settled, 10, "the store to settle")
    assert tasks == kept, "a task without its reminder, or the other way round"
    assert len(tasks) >= 6 * 4
    for first in starts:
        n = first
        while f"t{n}" in tasks:
            assert store.get_receipt(f"e{n}", now=T0) is not None, f"t{n} without its receipt"
            n += 1
        assert store.get_receipt(f"e{n}", now=T0) is None, f"e{n}'s receipt without its task"
    with open_store(store_url) as fresh:
        assert fresh.get_task("crash", "t0") is not None  # and the store still opens and reads
