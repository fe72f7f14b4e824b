"""Idempotency receipts: put-if-absent, expiry reads as absent, replacement after expiry."""

from __future__ import annotations

from datetime import timedelta

from store_helpers import T0, receipt

from nextup.store import SYSTEM_SCOPE, Store

TTL = timedelta(hours=1)


def test_first_receipt_wins(store: Store) -> None:
    first = store.put_receipt("alice", receipt("k1", ttl=TTL, outcome="applied"), now=T0)
    second = store.put_receipt("alice", receipt("k1", status=500, ttl=TTL, outcome="other"), now=T0)
    assert second == first
    assert store.get_receipt("alice", "k1", now=T0) == first
    assert first.reply == {"outcome": "applied"} and first.status == 202
    assert store.get_receipt("alice", "k2", now=T0) is None


def test_expired_receipt_reads_as_absent(store: Store) -> None:
    stored = store.put_receipt("alice", receipt("k1", ttl=TTL), now=T0)
    assert store.get_receipt("alice", "k1", now=T0 + TTL - timedelta(microseconds=1)) == stored
    assert store.get_receipt("alice", "k1", now=T0 + TTL) is None


def test_expired_receipt_is_replaced(store: Store) -> None:
    store.put_receipt("alice", receipt("k1", ttl=TTL, attempt=1), now=T0)
    later = T0 + TTL
    fresh = receipt("k1", ttl=TTL, attempt=2).model_copy(
        update={"created_at": later, "expires_at": later + TTL}
    )
    assert store.put_receipt("alice", fresh, now=later) == fresh
    assert store.get_receipt("alice", "k1", now=later) == fresh
    # and the replacement is itself put-if-absent
    assert store.put_receipt("alice", receipt("k1", ttl=TTL, attempt=3), now=later) == fresh


def test_receipts_are_scoped(store: Store) -> None:
    mine = store.put_receipt("alice", receipt("k1", who="alice"), now=T0)
    system = store.put_receipt(SYSTEM_SCOPE, receipt("k1", who="system"), now=T0)
    assert store.get_receipt("alice", "k1", now=T0) == mine
    assert store.get_receipt(SYSTEM_SCOPE, "k1", now=T0) == system
    assert store.get_receipt("bob", "k1", now=T0) is None


def test_purge_expired(store: Store, store_url: str) -> None:
    store.put_receipt("alice", receipt("old", ttl=TTL), now=T0)
    store.put_receipt("alice", receipt("new", ttl=TTL * 3), now=T0)
    purged = store.purge_expired(T0 + TTL * 2)
    assert purged == (1 if store_url.startswith("sqlite") else 0)  # DynamoDB: the table's TTL
    assert store.get_receipt("alice", "old", now=T0 + TTL * 2) is None
    assert store.get_receipt("alice", "new", now=T0 + TTL * 2) is not None
    # SQLite deleted it (gone even when read "before" expiry); DynamoDB's TTL deletes lazily.
    gone = store.get_receipt("alice", "old", now=T0) is None
    assert gone == store_url.startswith("sqlite")
