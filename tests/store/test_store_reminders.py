"""Reminders: the sparse due index, paging across users, and claiming with a lease."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from store_helpers import T0, reminder, task

from nextup.reminders import Reminder, ReminderStatus, mark_sent
from nextup.store import Conflict, InvalidCursor, Store

LEASE = timedelta(minutes=5)


def due_ids(store: Store, until=T0) -> list[tuple[str, str]]:
    return [(r.user_id, r.task_id) for r in store.due_reminders(until, limit=1000).items]


def test_save_and_get(store: Store) -> None:
    saved = store.save_reminder(reminder("alice", "t1", due_at=T0 + timedelta(minutes=15)))
    assert saved.version == 1
    assert store.get_reminder("alice", "t1") == saved
    assert store.get_reminder("alice", "t2") is None


def test_create_is_put_if_absent_and_updates_are_compare_and_set(store: Store) -> None:
    saved = store.save_reminder(reminder("alice", "t1"))
    with pytest.raises(Conflict):
        store.save_reminder(reminder("alice", "t1", remind_at=T0 + timedelta(hours=1)))
    moved = store.save_reminder(saved.model_copy(update={"remind_at": T0 + timedelta(hours=1)}))
    assert moved.version == 2
    with pytest.raises(Conflict):
        store.save_reminder(saved.model_copy(update={"status": ReminderStatus.CANCELLED}))
    assert store.get_reminder("alice", "t1") == moved


def test_due_index_holds_pending_and_unannounced_reminders_only(store: Store) -> None:
    pending = store.save_reminder(reminder("alice", "pending"))
    sent = store.save_reminder(reminder("alice", "sent"))
    cancelled = store.save_reminder(reminder("alice", "cancelled"))
    store.save_reminder(reminder("alice", "later", remind_at=T0 + timedelta(seconds=1)))
    assert due_ids(store) == [("alice", "cancelled"), ("alice", "pending"), ("alice", "sent")]

    # Sent but its event not out yet: it stays, so the event cannot be lost (the outbox).
    sent = store.save_reminder(mark_sent(sent, channel="email", message_id="<m@x>", sent_at=T0))
    store.save_reminder(cancelled.model_copy(update={"status": ReminderStatus.CANCELLED}))
    assert due_ids(store) == [("alice", "pending"), ("alice", "sent")]
    store.save_reminder(sent.model_copy(update={"announced": True}))
    assert due_ids(store) == [("alice", "pending")]
    assert store.due_reminders(T0).items == [pending]
    assert due_ids(store, T0 + timedelta(seconds=1)) == [("alice", "pending"), ("alice", "later")]


def test_due_bound_is_exact(store: Store) -> None:
    at = T0 + timedelta(microseconds=500)
    store.save_reminder(reminder("alice", "t1", remind_at=at))
    assert due_ids(store, at - timedelta(microseconds=1)) == []
    assert due_ids(store, at) == [("alice", "t1")]


def test_rescheduling_moves_the_reminder(store: Store) -> None:
    saved = store.save_reminder(reminder("alice", "t1"))
    moved = store.save_reminder(saved.model_copy(update={"remind_at": T0 + timedelta(days=1)}))
    assert due_ids(store) == []
    assert store.due_reminders(T0 + timedelta(days=1)).items == [moved]
    back = store.save_reminder(moved.model_copy(update={"remind_at": T0 - timedelta(days=1)}))
    assert store.due_reminders(T0).items == [back]


def test_zones_are_compared_in_utc(store: Store) -> None:
    from zoneinfo import ZoneInfo

    berlin = T0.astimezone(ZoneInfo("Europe/Berlin"))  # 10:00 local is 09:00 UTC
    store.save_reminder(reminder("alice", "t1", remind_at=berlin))
    assert due_ids(store, T0) == [("alice", "t1")]
    assert due_ids(store, T0 - timedelta(seconds=1)) == []


def test_due_reminders_pages_over_users(store: Store) -> None:
    """250 due reminders of 30 users, limit 100: each comes once, oldest first."""
    due = [
        reminder(f"user{i % 30:02d}", f"task{i:03d}", remind_at=T0 - timedelta(minutes=i % 97))
        for i in range(250)
    ]
    not_due = [
        reminder(f"user{i % 30:02d}", f"future{i}", remind_at=T0 + timedelta(seconds=1 + i))
        for i in range(20)
    ]
    cancelled = [
        reminder(f"user{i:02d}", f"gone{i}", status=ReminderStatus.CANCELLED) for i in range(10)
    ]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(store.save_reminder, due + not_due + cancelled))

    seen: list[Reminder] = []
    pages = 0
    cursor = None
    while True:
        page = store.due_reminders(T0, limit=100, cursor=cursor)
        pages += 1
        assert len(page.items) <= 100
        seen.extend(page.items)
        cursor = page.cursor
        if cursor is None:
            break
        assert len(page.items) == 100 or not page.items
    assert pages <= 4
    keys = [(r.user_id, r.task_id) for r in seen]
    assert len(keys) == len(set(keys)) == 250
    assert set(keys) == {(r.user_id, r.task_id) for r in due}
    assert [r.remind_at for r in seen] == sorted(r.remind_at for r in seen)
    assert all(r.version == 1 and r.status is ReminderStatus.PENDING for r in seen)


def test_a_bad_cursor_is_refused(store: Store) -> None:
    store.save_reminder(reminder("alice", "t1"))
    with pytest.raises(InvalidCursor) as bad:
        store.due_reminders(T0, cursor="not-a-cursor")
    assert bad.value.status == 400
    with pytest.raises(ValueError):
        store.due_reminders(T0, limit=0)


def test_claim_leases_a_due_reminder_once(store: Store) -> None:
    store.save_reminder(reminder("alice", "t1"))
    now = T0 + timedelta(seconds=1)
    claimed = store.claim_reminder("alice", "t1", owner="sender-a", now=now, lease=LEASE)
    assert claimed is not None
    assert (claimed.lease_owner, claimed.lease_until, claimed.attempts) == (
        "sender-a",
        now + LEASE,
        1,
    )
    assert store.get_reminder("alice", "t1") == claimed

    during = now + LEASE - timedelta(seconds=1)
    assert store.claim_reminder("alice", "t1", owner="sender-b", now=during, lease=LEASE) is None
    # Still due (pending) while leased, so a sender that dies leaves it for another.
    assert due_ids(store, during) == [("alice", "t1")]

    after = now + LEASE
    again = store.claim_reminder("alice", "t1", owner="sender-b", now=after, lease=LEASE)
    assert again is not None
    assert (again.lease_owner, again.attempts, again.version) == (
        "sender-b",
        2,
        claimed.version + 1,
    )


def test_claim_refuses_what_is_not_due_or_not_pending(store: Store) -> None:
    assert store.claim_reminder("alice", "none", owner="s", now=T0, lease=LEASE) is None
    store.save_reminder(reminder("alice", "early", remind_at=T0 + timedelta(minutes=1)))
    assert store.claim_reminder("alice", "early", owner="s", now=T0, lease=LEASE) is None
    sent = store.save_reminder(reminder("alice", "sent"))
    store.save_reminder(mark_sent(sent, channel="webhook", message_id="<m@x>", sent_at=T0))
    assert store.claim_reminder("alice", "sent", owner="s", now=T0, lease=LEASE) is None


def test_reminder_of_own_task(store: Store) -> None:
    store.create_task(task("alice", "t1", due_at=T0))
    assert store.save_reminder(reminder("alice", "t1")).version == 1
