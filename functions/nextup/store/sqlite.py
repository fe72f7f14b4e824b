"""The embedded backend: one SQLite file, for a laptop and tests.

One connection per thread (callers run the store from worker threads), WAL so readers
never wait for the writer, and a busy timeout after which a locked database is reported
as StoreUnavailable, i.e. "retry later". Every conditional write is a single statement,
which SQLite runs atomically, so compare-and-set holds across threads and processes.

It is the zero-configuration store, so it needs no init step: the first connection of a
process creates the file (and its directory) and the schema if they are missing. That is
idempotent and safe with several processes opening a new file at once: the schema is
written inside one `BEGIN IMMEDIATE` transaction, which only one of them gets at a time,
and every statement in it is `IF NOT EXISTS`. Errors name the store by its absolute path:
a relative path read from another directory is another store.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from nextup import jsontext
from nextup.store.errors import (
    CommitConflict,
    InvalidCursor,
    StoreError,
    StoreNotReady,
    StoreUnavailable,
)
from nextup.store.items import Item, Write, decode_cursor, encode_cursor, url_options

SCHEMA_VERSION = 1
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS items (
        pk TEXT NOT NULL,
        sk TEXT NOT NULL,
        data TEXT NOT NULL,
        version INTEGER NOT NULL,
        due TEXT,
        expires_at INTEGER,
        PRIMARY KEY (pk, sk)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS items_due ON items (due, pk, sk) WHERE due IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS items_expires ON items (expires_at) WHERE expires_at IS NOT NULL",
)
COLUMNS = "pk, sk, data, version, due, expires_at"
DEFAULT_TIMEOUT = 5.0
# Primary result codes (https://sqlite.org/rescode.html).
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CANTOPEN = 5, 6, 14


def _row(row: tuple) -> Item:
    pk, sk, data, version, due, expires_at = row
    return Item(pk, sk, jsontext.loads(data), version, due=due, expires_at=expires_at)


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class SqliteBackend:
    local = True

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(path).absolute()
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._generation = 0
        self._prepared = False  # the schema is known to exist (checked once per process)

    @classmethod
    def from_url(cls, url: str) -> SqliteBackend:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db``, option ``?timeout=5``."""
        parts = urlsplit(url)
        if parts.netloc or len(parts.path) < 2 or parts.fragment:
            raise ValueError(f"not a SQLite store URL: {url!r} (use sqlite:///path/to/state.db)")
        path = parts.path[1:]
        if path == ":memory:" or path.startswith("file:"):
            raise ValueError("the SQLite store needs a file: connections are per thread")
        options = url_options(parts.query, {"timeout"}, "SQLite")
        timeout = DEFAULT_TIMEOUT
        if "timeout" in options:
            try:
                timeout = float(options["timeout"])
            except ValueError:
                raise ValueError("timeout must be a number of seconds") from None
            if not 0 <= timeout <= 600:
                raise ValueError("timeout must be between 0 and 600 seconds")
        return cls(path, timeout=timeout)

    def __repr__(self) -> str:
        return f"SqliteBackend({str(self.path)!r})"

    @property
    def name(self) -> str:
        return f"sqlite:///{self.path.as_posix()}"  # sqlite:/// + an absolute path

    # -- connections ---------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreNotReady(
                f"cannot create the SQLite store {self.path}: {exc.strerror}"
            ) from exc
        # isolation_level=None: autocommit, each statement is its own atomic transaction.
        conn = sqlite3.connect(
            f"{self.path.as_uri()}?mode=rwc",
            uri=True,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        # In WAL mode NORMAL loses no committed write when a process dies (the WAL is in the
        # OS cache), only on power loss; FULL would fsync every write, ~4 ms each here.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Create the schema unless it is there: one cheap read when it is."""
        if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        # WAL is a property of the file: set once, every later connection uses it.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a forked child or a closed store opens a new one); the
        process's first one makes sure the file and schema exist."""
        local = self._local
        key = (os.getpid(), self._generation)
        if getattr(local, "key", None) == key:
            return local.conn
        conn = self._open()
        try:
            if not self._prepared:
                self._prepare(conn)
                self._prepared = True
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._connections.append(conn)
        local.conn, local.key = conn, key
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's errors as the store's: locked and not-initialised are transient."""
        try:
            yield
        except sqlite3.Error as exc:
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            message = str(exc)
            if code in (SQLITE_BUSY, SQLITE_LOCKED) or "locked" in message:
                raise StoreUnavailable(f"SQLite store {self.path} is busy: {message}") from exc
            if code == SQLITE_CANTOPEN:
                raise StoreNotReady(f"cannot open the SQLite store {self.path}: {message}") from exc
            raise StoreError(f"SQLite store {self.path}: {message}") from exc

    # -- Backend -------------------------------------------------------------------------

    def init(self) -> None:
        """What the first connection does anyway; kept for `nextup store init`."""
        with self._errors():
            self._conn()

    def ping(self) -> None:
        with self._errors():
            self._conn().execute("SELECT 1 FROM items LIMIT 1").fetchall()

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
            self._generation += 1
        for conn in connections:
            conn.close()

    def get(self, pk: str, sk: str) -> Item | None:
        with self._errors():
            row = (
                self._conn()
                .execute(f"SELECT {COLUMNS} FROM items WHERE pk = ? AND sk = ?", (pk, sk))
                .fetchone()
            )
        return None if row is None else _row(row)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Item | None]:
        if not keys:
            return []
        wanted = " OR ".join(["(pk = ? AND sk = ?)"] * len(keys))
        params = tuple(part for key in keys for part in key)
        with self._errors():
            rows = self._conn().execute(f"SELECT {COLUMNS} FROM items WHERE {wanted}", params)
            found = {(row[0], row[1]): _row(row) for row in rows.fetchall()}
        return [found.get(key) for key in keys]

    def put(self, item: Item, *, expect_version: int | None) -> bool:
        with self._errors():
            return self._put(self._conn(), item, expect_version)

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: the write lock is taken first, so conditions
        checked inside it still hold when it commits. Committed when the body returns,
        rolled back when it raises."""
        with self._errors():
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def commit(self, writes: Sequence[Write]) -> None:
        """All the writes in one transaction, or none if any condition does not hold."""
        if len(writes) == 1:  # a single statement is its own transaction
            if not self.put(writes[0].item, expect_version=writes[0].expect_version):
                raise CommitConflict((0,))
            return
        with self._immediate() as conn:
            failed = tuple(
                i for i, w in enumerate(writes) if not self._put(conn, w.item, w.expect_version)
            )
            if failed:
                raise CommitConflict(failed)  # rolls the transaction back

    def put_many(self, writes: Sequence[Write]) -> list[bool]:
        """One transaction that keeps every write whose condition holds."""
        if len(writes) <= 1:
            return [self.put(w.item, expect_version=w.expect_version) for w in writes]
        with self._immediate() as conn:
            return [self._put(conn, w.item, w.expect_version) for w in writes]

    @staticmethod
    def _put(conn: sqlite3.Connection, item: Item, expect_version: int | None) -> bool:
        values = (
            item.pk,
            item.sk,
            jsontext.dumps_text(item.data),
            item.version,
            item.due,
            item.expires_at,
        )
        if expect_version is None:
            sql = (
                f"INSERT INTO items ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pk, sk) "
                "DO UPDATE SET data = excluded.data, version = excluded.version, "
                "due = excluded.due, expires_at = excluded.expires_at"
            )
            params: tuple = values
        elif expect_version == 0:
            sql = f"INSERT INTO items ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            params = values
        else:
            sql = (
                "UPDATE items SET data = ?, version = ?, due = ?, expires_at = ? "
                "WHERE pk = ? AND sk = ? AND version = ?"
            )
            params = (*values[2:], item.pk, item.sk, expect_version)
        return conn.execute(sql, params).rowcount == 1

    def delete(self, pk: str, sk: str) -> None:
        with self._errors():
            self._conn().execute("DELETE FROM items WHERE pk = ? AND sk = ?", (pk, sk))

    def purge_expired(self, before: int) -> int:
        with self._errors():
            return (
                self._conn()
                .execute(
                    "DELETE FROM items WHERE expires_at IS NOT NULL AND expires_at <= ?", (before,)
                )
                .rowcount
            )

    def query(
        self, pk: str, sk_prefix: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Item], str | None]:
        after = sk_prefix
        if cursor is not None:
            after = decode_cursor(cursor)
            if not isinstance(after, str) or not after.startswith(sk_prefix):
                raise InvalidCursor("not from this query")
        sql = (
            f"SELECT {COLUMNS} FROM items WHERE pk = ? AND sk >= ? AND sk < ? "
            + ("AND sk > ? " if cursor is not None else "")
            + "ORDER BY sk LIMIT ?"
        )
        params: tuple = (pk, sk_prefix, _prefix_end(sk_prefix))
        params += (after, limit + 1) if cursor is not None else (limit + 1,)
        with self._errors():
            rows = self._conn().execute(sql, params).fetchall()
        items = [_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return items, encode_cursor(items[-1].sk) if more else None

    def query_due(
        self, until: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Item], str | None]:
        sql = f"SELECT {COLUMNS} FROM items WHERE due IS NOT NULL AND due <= ? "
        params: tuple = (until,)
        if cursor is not None:
            position = decode_cursor(cursor)
            if not (isinstance(position, list) and len(position) == 3):
                raise InvalidCursor("not from a due query")
            sql += "AND (due, pk, sk) > (?, ?, ?) "
            params += tuple(position)
        sql += "ORDER BY due, pk, sk LIMIT ?"
        params += (limit + 1,)
        with self._errors():
            rows = self._conn().execute(sql, params).fetchall()
        items = [_row(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return items, None
        last = items[-1]
        return items, encode_cursor([last.due, last.pk, last.sk])
