"""Opening, initialising and probing a store, and what it says when it cannot work."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, ParamValidationError
from store_helpers import T0, fresh_table, reminder, task

from nextup.store import Store, StoreError, StoreNotReady, StoreUnavailable, open_store
from nextup.store.dynamodb import DynamoBackend, store_error


def test_init_twice_keeps_data(store_url: str) -> None:
    with open_store(store_url) as store:
        store.init()
        stored, _ = store.create_task(task("alice", "t1"))
        store.init()
        store.ping()
        assert store.get_task("alice", "t1") == stored
    with open_store(store_url) as again:
        again.init()
        assert again.get_task("alice", "t1") == stored


def test_a_dynamodb_table_not_created_says_so_on_every_call(dynamodb_endpoint: str) -> None:
    table = fresh_table()
    store = open_store(f"dynamodb://{table}")
    for attempt in (store.ping, lambda: store.get_task("alice", "t1")):
        with pytest.raises(StoreNotReady) as missing:
            attempt()
        error = missing.value
        assert (error.status, error.field) == (503, "store")
        assert str(error) == (
            f"DynamoDB table '{table}' does not exist: run "
            f"`nextup store init --store dynamodb://{table}`"
        )
        # Not a fault of a store that is there: never retried inside a call.
        assert not isinstance(error, StoreUnavailable)
    store.close()


def test_a_new_sqlite_path_needs_no_init(tmp_path: Path) -> None:
    path = tmp_path / "never" / "made" / "store.db"
    with open_store(f"sqlite:///{path}") as store:
        store.ping()
        assert store.create_task(task("alice", "t1"))[1]
    assert path.exists()
    with open_store(f"sqlite:///{path}") as again:
        assert again.get_task("alice", "t1") is not None


def test_many_processes_opening_one_new_sqlite_file_at_once_all_work(tmp_path: Path) -> None:
    """Each process creates the schema if it is missing; they race for it, and every one
    of them writes its task (nobody sees a half-made schema or a lock error)."""
    path = tmp_path / "racing" / "store.db"
    code = (
        "import sys\n"
        "from nextup.store import open_store\n"
        "from nextup.tasks import Task\n"
        "store = open_store(sys.argv[1])\n"
        "n = sys.argv[2]\n"
        "task = Task(user_id='u' + n, task_id='t' + n, series_id='t' + n)\n"
        "print(store.create_task(task)[1])\n"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, f"sqlite:///{path}", str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    outputs = [worker.communicate(timeout=60) for worker in workers]
    assert [w.returncode for w in workers] == [0] * 8, outputs
    assert [out.strip() for out, _ in outputs] == ["True"] * 8
    with open_store(f"sqlite:///{path}") as store:
        assert all(store.get_task(f"u{n}", f"t{n}") for n in range(8))


def test_an_sqlite_store_that_cannot_be_created_names_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocked").write_text("a file where a directory should be")
    with open_store("sqlite:///blocked/store.db") as store, pytest.raises(StoreNotReady) as error:
        store.ping()
    assert str(tmp_path / "blocked" / "store.db") in str(error.value)
    assert error.value.status == 503


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_dynamodb_unreachable_fails_fast(aws_env: pytest.MonkeyPatch, closed_port: int) -> None:
    aws_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{closed_port}")
    store = open_store(f"dynamodb://{fresh_table()}")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.ping()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.get_task("alice", "t1")
    assert time.monotonic() - started < 5
    store.close()


def test_sqlite_locked_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with open_store(f"sqlite:///{path}?timeout=0.05") as store:
        store.init()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreUnavailable, match="busy"):
                store.create_task(task("alice", "t1"))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert store.create_task(task("alice", "t1"))[1]


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("ProvisionedThroughputExceededException", 400, True),
        ("ThrottlingException", 400, True),
        ("RequestLimitExceeded", 400, True),
        ("InternalServerError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("ValidationException", 400, False),
        ("AccessDeniedException", 400, False),
    ],
)
def test_dynamodb_error_classes(code: str, status: int, transient: bool) -> None:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    error = store_error(ClientError(response, "PutItem"), "t")
    assert isinstance(error, StoreError)
    assert isinstance(error, StoreUnavailable) is transient
    assert isinstance(
        store_error(ConnectTimeoutError(endpoint_url="http://x"), "t"), StoreUnavailable
    )
    assert not isinstance(store_error(ParamValidationError(report="bad"), "t"), StoreUnavailable)


def test_unknown_scheme() -> None:
    with pytest.raises(ValueError, match=r"sqlite:///.*dynamodb://"):
        open_store("redis://localhost/0")
    with pytest.raises(ValueError, match="sqlite"):
        open_store("state.db")


def test_sqlite_relative_path_and_parent_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///deep/er/state.db")
    monkeypatch.chdir("/")  # the path was fixed when the store was opened
    store.init()
    store.close()
    assert (tmp_path / "deep" / "er" / "state.db").is_file()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://host/state.db",
        "sqlite:///:memory:",
        "sqlite:///",
        "sqlite:///x.db?timeout=soon",
        "sqlite:///x.db?journal=off",
        "dynamodb://",
        "dynamodb://t!",
        "dynamodb://table/extra",
        "dynamodb://table?shards=0",
        "dynamodb://table?shards=x",
        "dynamodb://table?region=eu-west-1",
    ],
)
def test_bad_urls(url: str, dynamodb_endpoint: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)


def test_dynamodb_needs_a_region_off_loopback(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://dynamodb.internal:8000")
    with pytest.raises(ValueError, match="AWS_REGION"):
        open_store("dynamodb://nextup")


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_dynamodb_keeps_configured_region_and_credentials(
    aws_env: pytest.MonkeyPatch, variable: str
) -> None:
    """The loopback fallback fills in only what is missing."""
    aws_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    aws_env.setenv(variable, "eu-central-1")
    aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    light = DynamoBackend("nextup").client
    assert (light.region, light.credentials.access_key) == ("eu-central-1", "AKIDEXAMPLE")
    aws_env.setenv("NEXTUP_DYNAMODB_CLIENT", "boto3")
    client = DynamoBackend("nextup").client
    assert client.meta.region_name == "eu-central-1"
    assert client._request_signer._credentials.access_key == "AKIDEXAMPLE"


def test_dynamodb_shards_may_grow(dynamodb_endpoint: str) -> None:
    table = fresh_table()
    with open_store(f"dynamodb://{table}?shards=2") as before:
        before.init()
        for i in range(12):
            before.save_reminder(reminder(f"user{i}", f"t{i}"))
    with open_store(f"dynamodb://{table}?shards=5") as after:
        page = after.due_reminders(T0, limit=5)
        found = list(page.items)
        while page.cursor:
            page = after.due_reminders(T0, limit=5, cursor=page.cursor)
            found.extend(page.items)
        assert sorted(r.task_id for r in found) == sorted(f"t{i}" for i in range(12))


def test_store_import_loads_no_backend() -> None:
    """Cold starts: `import nextup.store` must not pay for boto3 or sqlite3."""
    code = (
        "import sys, nextup.store\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'sqlite3', '_sqlite3') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True
    )
    assert result.stdout.strip() == "[]"


def test_context_manager_closes(store: Store) -> None:
    with store:
        store.ping()
