"""Races: of many concurrent writers exactly one wins, on both backends.

Threads start together behind a barrier so their requests really overlap; SQLite is also
raced across processes, which is how several local function processes share one file.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from store_helpers import T0, create_in_process, receipt, reminder, task

from nextup.store import Conflict, Store, open_store

RACERS = 16
R = TypeVar("R")


def race(action: Callable[[int], R], racers: int = RACERS) -> list[R | Exception]:
    """Run action(0..racers-1) at once; each result, or the exception it raised."""
    barrier = threading.Barrier(racers)

    def run(i: int) -> R | Exception:
        barrier.wait()
        try:
            return action(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(racers) as pool:
        return list(pool.map(run, range(racers)))


def test_one_creator_wins(store: Store) -> None:
    results = race(lambda i: store.create_task(task("alice", "t1", title=f"racer {i}")))
    assert not [r for r in results if isinstance(r, Exception)]
    winners = [stored for stored, created in results if created]
    assert len(winners) == 1
    assert {stored for stored, _ in results} == {winners[0]}
    assert store.get_task("alice", "t1") == winners[0]


def test_one_compare_and_set_wins(store: Store) -> None:
    stored, _ = store.create_task(task("alice", "t1"))
    results = race(lambda i: store.save_task(stored.model_copy(update={"title": f"racer {i}"})))
    saved = [r for r in results if not isinstance(r, Exception)]
    assert len(saved) == 1
    assert sum(isinstance(r, Conflict) for r in results) == RACERS - 1
    assert store.get_task("alice", "t1") == saved[0]
    assert saved[0].version == 2


def test_one_claimer_wins(store: Store) -> None:
    store.save_reminder(reminder("alice", "t1"))
    lease = timedelta(minutes=1)
    results = race(
        lambda i: store.claim_reminder("alice", "t1", owner=f"s{i}", now=T0, lease=lease)
    )
    assert not [r for r in results if isinstance(r, Exception)]
    claimed = [r for r in results if r is not None]
    assert len(claimed) == 1
    assert store.get_reminder("alice", "t1") == claimed[0]
    assert claimed[0].attempts == 1


def test_one_receipt_wins(store: Store) -> None:
    results = race(lambda i: store.commit([receipt("k1", racer=i)]))
    won = [r[0] for r in results if not isinstance(r, Exception)]
    assert len(won) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception))
    assert store.get_receipt("k1", now=T0) == won[0]


def test_one_process_creates(tmp_path: Path) -> None:
    """Eight processes, one SQLite file, the same task: exactly one creates it."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with open_store(url) as store:
        store.init()
    context = multiprocessing.get_context("spawn")
    processes = 8
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=create_in_process, args=(url, barrier, results, i))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * processes
    assert outcomes.count(True) == 1 and outcomes.count(False) == processes - 1, outcomes
    with open_store(url) as store:
        stored = store.get_task("alice", "t1")
    assert stored is not None and stored.version == 1
