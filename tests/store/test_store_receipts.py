"""Idempotency receipts: one per event (source + id) for every user, written with the
effects they guard, read as expired after their time, replaced at their version."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_helpers import T0, receipt, task

from nextup.store import CommitConflict, Store, receipt_ref, task_ref

# The core contract: on DynamoDB through boto3's client too (conftest).
THROUGH_BOTO3 = True

TTL = timedelta(hours=1)


def test_a_receipt_is_written_once(store: Store) -> None:
    [first] = store.commit([receipt("k1", ttl=TTL, outcome="applied")])
    assert first.version == 1
    with pytest.raises(CommitConflict):
        store.commit([receipt("k1", status=500, ttl=TTL, outcome="other")])
    assert store.get_receipt("k1", now=T0) == first
    assert first.body == {"outcome": "applied"} and first.status == 202
    assert store.get_receipt("k2", now=T0) is None


def test_receipts_are_global_not_per_user(store: Store) -> None:
    """Deduplication is on source + id: the same event named by another user is the same
    event, so there is one receipt for it, whoever's data it carried."""
    store.commit([receipt("k1", who="alice"), task("alice", "t1")])
    with pytest.raises(CommitConflict):
        store.commit([receipt("k1", who="bob"), task("bob", "t1")])
    assert store.get_task("bob", "t1") is None, "nothing of the loser was written"
    assert store.get_receipt("k1", now=T0).body == {"who": "alice"}


def test_expired_receipt_reads_as_absent(store: Store) -> None:
    [stored] = store.commit([receipt("k1", ttl=TTL)])
    assert store.get_receipt("k1", now=T0 + TTL - timedelta(microseconds=1)) == stored
    assert store.get_receipt("k1", now=T0 + TTL) is None
    # `load` gives it as stored, expiry and version included, to be replaced at its version
    assert store.load([receipt_ref("k1")]) == [stored]


def test_an_expired_receipt_is_replaced_at_its_version(store: Store) -> None:
    [old] = store.commit([receipt("k1", ttl=TTL, attempt=1)])
    later = T0 + TTL
    fresh = receipt("k1", ttl=TTL, at=later, attempt=2)
    with pytest.raises(CommitConflict):  # as if absent: it is not
        store.commit([fresh])
    [replaced] = store.commit([fresh.model_copy(update={"version": old.version})])
    assert store.get_receipt("k1", now=later) == replaced and replaced.version == 2
    with pytest.raises(CommitConflict):  # and only once
        store.commit([fresh.model_copy(update={"version": old.version})])


def test_purge_expired(store: Store, store_url: str) -> None:
    store.commit([receipt("old", ttl=TTL)])
    store.commit([receipt("new", ttl=TTL * 3)])
    purged = store.purge_expired(T0 + TTL * 2)
    assert purged == (1 if store_url.startswith("sqlite") else 0)  # DynamoDB: the table's TTL
    assert store.get_receipt("old", now=T0 + TTL * 2) is None
    assert store.get_receipt("new", now=T0 + TTL * 2) is not None
    # SQLite deleted it (gone even when read "before" expiry); DynamoDB's TTL deletes lazily.
    gone = store.get_receipt("old", now=T0) is None
    assert gone == store_url.startswith("sqlite")
    assert store.load([task_ref("alice", "none")]) == [None]
