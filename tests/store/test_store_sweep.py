"""The sweep's batch operations: many reminders claimed, and many outcomes recorded, in one
round trip each, every one on its own condition: a reminder claimed by another sender, or
changed since it was read, is left out, and only it. On both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_helpers import T0, reminder
from test_store_commit import Counting
from test_store_races import race

from nextup.reminders import ReminderStatus, mark_sent
from nextup.store import Store, reminder_ref
from nextup.store.items import MAX_COMMIT

LEASE = timedelta(minutes=5)
NOW = T0 + timedelta(seconds=1)


def due(store: Store, count: int, user: str = "alice") -> list:
    for n in range(count):
        store.save_reminder(reminder(user, f"t{n:03d}"))
    return store.due_reminders(NOW, limit=1000).items


def test_a_batch_is_claimed_in_one_round_trip(store: Store) -> None:
    candidates = due(store, MAX_COMMIT)
    store._backend = counting = Counting(store._backend)  # type: ignore[assignment]
    claimed = store.claim_reminders(candidates, owner="s", now=NOW, lease=LEASE)
    assert counting.calls == ["put_many"]
    assert len(claimed) == MAX_COMMIT
    assert all(r.lease_owner == "s" and r.attempts == 1 and r.version == 2 for r in claimed)
    stored = store.load([reminder_ref(r.user_id, r.task_id) for r in claimed])
    assert stored == claimed


def test_only_the_reminders_claimed_or_changed_meanwhile_are_left_out(store: Store) -> None:
    candidates = due(store, 10)
    # Another sender claimed two of them; two others were sent, or snoozed, meanwhile.
    store.claim_reminder("alice", "t002", owner="other", now=NOW, lease=LEASE)
    store.claim_reminder("alice", "t007", owner="other", now=NOW, lease=LEASE)
    sent = candidates[4]
    store.save_reminder(mark_sent(sent, channel="email", message_id="<m@x>", sent_at=T0))
    later = candidates[9]
    store.save_reminder(later.model_copy(update={"remind_at": T0 + timedelta(hours=1)}))
    store._backend = counting = Counting(store._backend)  # type: ignore[assignment]
    claimed = store.claim_reminders(candidates, owner="s", now=NOW, lease=LEASE)
    assert sorted(r.task_id for r in claimed) == [f"t{n:03d}" for n in (0, 1, 3, 5, 6, 8)], (
        "the others' claims never held up the rest"
    )
    # A backend that says which writes lost (SQLite at once, DynamoDB through its
    # cancellation reasons) drops them and retries the rest: two round trips at most here.
    assert counting.calls in (["put_many"], ["put_many", "put_many"]), counting.calls
    assert store.get_reminder("alice", "t002").lease_owner == "other"
    assert store.get_reminder("alice", "t004").status is ReminderStatus.SENT
    assert store.get_reminder("alice", "t009").lease_owner is None


def test_what_is_not_claimable_costs_no_write(store: Store) -> None:
    candidates = due(store, 3)
    leased = store.claim_reminders(candidates, owner="s", now=NOW, lease=LEASE)
    store._backend = counting = Counting(store._backend)  # type: ignore[assignment]
    assert store.claim_reminders(leased, owner="t", now=NOW, lease=LEASE) == []
    assert counting.calls == []


def test_concurrent_sweeps_over_the_same_batch_claim_each_reminder_once(store: Store) -> None:
    candidates = due(store, 40)
    results = race(
        lambda i: store.claim_reminders(candidates, owner=f"s{i}", now=NOW, lease=LEASE),
        racers=8,
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    claims = [(r.task_id, r.lease_owner) for won in results for r in won]
    assert len({task for task, _ in claims}) == len(claims), "no reminder claimed twice"
    for task_id, owner in claims:
        stored = store.get_reminder("alice", task_id)
        assert stored.lease_owner == owner and stored.attempts == 1
    # A reminder nobody got (every racer lost it to a transaction in flight) is still
    # pending and unleased: the next sweep has it.
    for r in store.due_reminders(NOW, limit=1000).items:
        assert r.lease_owner is not None or r.attempts == 0


def test_save_each_writes_what_holds_and_names_what_did_not(store: Store) -> None:
    candidates = due(store, 3)
    claimed = store.claim_reminders(candidates, owner="s", now=NOW, lease=LEASE)
    stale = claimed[1].model_copy(update={"version": 1})  # as read before the claim
    outcomes = [
        mark_sent(claimed[0], channel="email", message_id="<a@x>", sent_at=NOW),
        mark_sent(stale, channel="email", message_id="<b@x>", sent_at=NOW),
        claimed[2].model_copy(update={"status": ReminderStatus.CANCELLED, "lease_until": None}),
    ]
    saved = store.save_each(outcomes)
    assert saved[1] is None
    assert saved[0].version == saved[2].version == 3
    assert store.get_reminder("alice", "t000") == saved[0]
    assert store.get_reminder("alice", "t001") == claimed[1]
    assert store.save_each([]) == []
    with pytest.raises(ValueError, match="once"):
        store.save_each([claimed[0], claimed[0]])
