"""The item-level Backend contract both backends implement (what the Store relies on)."""

from __future__ import annotations

import pytest

from nextup.store import Backend, InvalidCursor, Item

# The core contract: on DynamoDB through boto3's client too (conftest).
THROUGH_BOTO3 = True


def item(sk: str, version: int = 1, *, pk: str = "p", due: str | None = None, **data: int) -> Item:
    return Item(pk, sk, data or {"n": 0}, version, due=due)


def test_conditional_put(backend: Backend) -> None:
    assert backend.get("p", "a") is None
    assert not backend.put(item("a", 2), expect_version=1)  # absent: no version matches
    assert backend.put(item("a", 1, n=1), expect_version=0)
    assert not backend.put(item("a", 1, n=2), expect_version=0)
    assert backend.get("p", "a") == item("a", 1, n=1)
    assert not backend.put(item("a", 3, n=3), expect_version=2)
    assert backend.put(item("a", 2, n=4), expect_version=1)
    assert backend.put(item("a", 7, n=5), expect_version=None)
    assert backend.get("p", "a") == item("a", 7, n=5)
    backend.delete("p", "a")
    assert backend.get("p", "a") is None
    assert backend.put(item("b", 1, n=6), expect_version=None)
    assert backend.get("p", "b") == item("b", 1, n=6)


def test_attributes_round_trip(backend: Backend) -> None:
    full = Item(
        "p", "x", {"s": "ü", "nested": {"list": [1, None, True]}}, 3, due="d1", expires_at=99
    )
    backend.put(full, expect_version=None)
    assert backend.get("p", "x") == full
    bare = Item("p", "x", {}, 4)  # a write drops what the item no longer has
    backend.put(bare, expect_version=3)
    assert backend.get("p", "x") == bare


def test_query_is_one_partition_one_prefix_in_order(backend: Backend) -> None:
    for sk in ["task#b", "task#a", "task$", "tas", "reminder#a", "task#c"]:
        backend.put(item(sk), expect_version=0)
    backend.put(item("task#z", pk="other"), expect_version=0)
    found: list[str] = []
    cursor = None
    while True:
        items, cursor = backend.query("p", "task#", limit=2, cursor=cursor)
        assert len(items) <= 2
        found.extend(i.sk for i in items)
        if cursor is None:
            break
    assert found == ["task#a", "task#b", "task#c"]
    with pytest.raises(InvalidCursor):
        backend.query("p", "task#", limit=2, cursor="garbage!")


def test_query_due_is_ascending_across_partitions(backend: Backend) -> None:
    dues = {f"u{i}": f"2030-01-01T00:00:{i % 7:02d}Z#u{i}" for i in range(20)}
    for pk, due in dues.items():
        backend.put(item("reminder#t", pk=pk, due=due), expect_version=0)
    backend.put(item("task#t", pk="u0"), expect_version=0)  # no due: not in the index
    found: list[str] = []
    cursor = None
    while True:
        items, cursor = backend.query_due("2030-01-01T00:00:05Z~", limit=3, cursor=cursor)
        found.extend(i.due or "" for i in items)
        if cursor is None:
            break
    assert found == sorted(d for d in dues.values() if d <= "2030-01-01T00:00:05Z~")


def test_purge_expired(backend: Backend, store_url: str) -> None:
    backend.put(Item("p", "old", {}, 1, expires_at=100), expect_version=0)
    backend.put(Item("p", "new", {}, 1, expires_at=200), expect_version=0)
    backend.put(Item("p", "keep", {}, 1), expect_version=0)
    purged = backend.purge_expired(150)
    if store_url.startswith("sqlite"):
        assert purged == 1 and backend.get("p", "old") is None
    else:  # DynamoDB's TTL does it
        assert purged == 0
    assert backend.get("p", "new") is not None and backend.get("p", "keep") is not None
