"""The `nextup` command against both store backends, as a user runs it (a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from nextup import tasks
from nextup.fields import TaskFields
from nextup.store import open_store


def nextup(
    *args: str, env: dict[str, str] | None = None, cwd: os.PathLike | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nextup.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=60,
    )


@pytest.fixture(params=["sqlite", "dynamodb"])
def store_url(request, tmp_path, moto_server, monkeypatch) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cli/state.db"
    for name, value in {
        "AWS_ENDPOINT_URL_DYNAMODB": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return f"dynamodb://cli-{uuid.uuid4().hex[:8]}"


def test_store_init_twice_then_list(store_url):
    for _ in range(2):
        done = nextup("store", "init", "--store", store_url)
        assert done.returncode == 0, done.stderr
    empty = nextup("tasks", "list", "--user", "u1", "--json", "--store", store_url)
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout) == []

    store = open_store(store_url)
    fields = TaskFields.model_validate(
        {
            "title": "Water the plants",
            "due_at": "2026-11-24T09:00:00+01:00",
            "timezone": "Europe/Berlin",
        }
    )
    store.create_task(tasks.register("u1", "t1", fields, event_key="k"))
    store.create_task(tasks.register("u1", "t0", TaskFields(title="someday"), event_key="k"))
    store.create_task(tasks.register("u2", "t2", TaskFields(title="not yours"), event_key="k"))
    done, _ = tasks.complete(
        store.get_task("u1", "t1"), completed_at=datetime.now(UTC), event_key="k2"
    )
    store.save_task(done)
    store.close()

    listed = nextup("tasks", "list", "--user", "u1", "--json", "--store", store_url)
    rows = json.loads(listed.stdout)
    assert [row["task_id"] for row in rows] == ["t1", "t0"], "by due time, undated last; only u1's"
    first = rows[0]
    assert first["status"] == "completed"
    assert first["due_at"] == "2026-11-24T09:00:00+01:00"
    assert first["title"] == "Water the plants"
    assert first["parent_task_id"] is None
    table = nextup("tasks", "list", "--user", "u1", "--store", store_url)
    assert "Water the plants" in table.stdout and "not yours" not in table.stdout


def test_store_url_from_the_environment(tmp_path):
    url = f"sqlite:///{tmp_path}/env/state.db"
    assert nextup("store", "init", env={"NEXTUP_STORE_URL": url}).returncode == 0
    assert (tmp_path / "env" / "state.db").exists()


def test_bad_store_url_is_a_clear_error():
    done = nextup("tasks", "list", "--user", "u1", "--store", "postgres://nope")
    assert done.returncode == 2
    assert "sqlite:///" in done.stderr and "dynamodb://" in done.stderr


def test_a_listing_names_the_store_it_read_by_its_absolute_path(tmp_path):
    """A relative default read from another directory is another store: say which."""
    (tmp_path / "elsewhere").mkdir()
    done = nextup(
        "tasks", "list", "--user", "u1", "--store", "sqlite:///rel/state.db", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"no tasks for user u1 in sqlite://{tmp_path}/rel/state.db"
