"""The item-level contract between the typed `Store` and a backend, and what backends share.

A backend only moves items in and out and translates its own errors; every rule (keys,
versions, ownership, expiry, what is due) lives in `nextup.store.base`, once for both.

An item is ``pk`` + ``sk`` (its key), ``data`` (a JSON-able dict), ``version`` (an int the
Store bumps on every write), ``due`` (a sort key in the sparse due index, or None) and
``expires_at`` (epoch seconds after which the item may be dropped, or None).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

from nextup.store.errors import InvalidCursor

# DynamoDB's TransactWriteItems takes at most 100 items (and BatchGetItem 100 keys); an
# event writes a handful, a reminder sweep up to this many at a time.
MAX_COMMIT = 100


@dataclass(frozen=True, slots=True)
class Item:
    pk: str
    sk: str
    data: Mapping[str, Any]
    version: int
    due: str | None = None
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class Write:
    """One item of an atomic commit and the condition it is written under: `expect_version`
    None (unconditional), 0 (only if absent) or n (only if the stored version is n)."""

    item: Item
    expect_version: int | None


class Backend(Protocol):
    # True when calls touch only a local file: cheap enough to run on the event loop.
    local: bool
    # The store's URL with nothing left relative (an SQLite file by its absolute path): what
    # messages call it, so a person can tell one store from another.
    name: str

    """Item I/O against one table. Methods raise `StoreUnavailable` for transient faults.

    Versions: `put` writes `item` exactly as given, version included; the Store chooses the
    version (n + 1 after reading n). The backend only checks the condition atomically.
    """

    def get(self, pk: str, sk: str) -> Item | None:
        """The item, read consistently (a write that returned is visible)."""
        ...

    def put(self, item: Item, *, expect_version: int | None) -> bool:
        """Write `item` if the condition holds, atomically; False if it did not.

        None: unconditional. 0: only if no item has this key. n: only if the stored
        item's version is n (so never if it is absent).
        """
        ...

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Item | None]:
        """Each key's item (None where absent), read consistently, in one round trip."""
        ...

    def commit(self, writes: Sequence[Write]) -> None:
        """Write every item or none, atomically; `CommitConflict` naming the writes whose
        condition did not hold. At most `MAX_COMMIT` writes, each to a distinct key."""
        ...

    def put_many(self, writes: Sequence[Write]) -> list[bool]:
        """Write each item on its own condition, in one round trip unless writers race
        for the same items: whether each was written. Not all or nothing: a write whose
        condition does not hold is left out and the others still land. At most
        `MAX_COMMIT` writes, each to a distinct key."""
        ...

    def query(
        self, pk: str, sk_prefix: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Item], str | None]:
        """Up to `limit` items of partition `pk` whose sk starts with `sk_prefix`, by sk.

        The cursor is None when there is nothing more (it may be set on a last, full page).
        """
        ...

    def query_due(
        self, until: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Item], str | None]:
        """Up to `limit` items with ``due <= until`` across all partitions, ascending due."""
        ...

    def delete(self, pk: str, sk: str) -> None: ...

    def purge_expired(self, before: int) -> int:
        """Delete items whose expires_at <= `before`; how many (0 where the service does it)."""
        ...

    def init(self) -> None:
        """Create the table or schema; running it again changes nothing."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailable unless the table is reachable and initialised."""
        ...

    def close(self) -> None: ...


def encode_cursor(state: Any) -> str:
    """An opaque, URL-safe cursor for a backend's JSON-able position."""
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The position inside a cursor from `encode_cursor`; InvalidCursor if it is not one."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > 8192:
        raise InvalidCursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidCursor() from None


def url_options(query: str, allowed: set[str], kind: str) -> dict[str, str]:
    """A store URL's ``?name=value`` options; ValueError naming any the backend lacks."""
    options = {name: values[-1] for name, values in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"unknown {kind} store option(s): {', '.join(unknown)}")
    return options
