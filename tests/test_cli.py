"""The `nextup` command against both store backends, as a user runs it (a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from nextup import tasks
from nextup.fields import TaskFields
from nextup.store import open_store
from nextup_dev.moto import aws_env
from nextup_dev.stores import SQLITE, STORE_KINDS
from nextup_dev.stores import store_url as store_url_for


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


@pytest.fixture(params=STORE_KINDS)
def store_url(request, tmp_path, moto_server, monkeypatch) -> str:
    if request.param == SQLITE:
        return store_url_for(SQLITE, tmp_path / "cli")
    for name, value in aws_env(moto_server).items():
        monkeypatch.setenv(name, value)
    return store_url_for(request.param, tmp_path, prefix="cli")


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
    assert done.stdout.strip() == f"no tasks for user u1 in sqlite:///{tmp_path}/rel/state.db"


def test_help_shows_only_what_a_person_runs_and_every_default():
    top = nextup("--help")
    assert top.returncode == 0
    assert "SUPPRESS" not in top.stdout and "dispatcher" not in top.stdout
    for command in ("store", "tasks", "events", "dev", "emit"):
        assert f"    {command}" in top.stdout, command
    wide = {"COLUMNS": "200"}  # no wrapping inside what is looked for
    dev = nextup("dev", "--help", env=wide).stdout
    for default in ("(default: 8080)", "(default: .nextup)", "(default: 60.0)", "(default: 16)"):
        assert default in dev, default
    emit = nextup("emit", "--help", env=wide).stdout
    assert "--timeout TIMEOUT" in emit and "seconds to wait for the answer (default: 10.0)" in emit


@pytest.mark.parametrize("group", ["tasks", "store", "events"])
def test_a_command_group_alone_prints_its_commands_not_an_argparse_error(group):
    done = nextup(group)
    assert done.returncode == 2
    assert "required" not in done.stderr
    assert f"usage: nextup {group} [-h] COMMAND" in done.stderr


def test_emit_with_nothing_listening_says_what_to_start(tmp_path):
    done = nextup("emit", "todo.health.probe", "--data", "{}", "--state-dir", str(tmp_path))
    assert done.returncode == 1
    assert "is nextup dev running? Start it with `make dev`" in done.stderr
    assert "--to URL" in done.stderr


def test_the_listing_keeps_its_columns_for_long_ids_and_says_what_became_of_reminders(
    tmp_path,
):
    from nextup import reminders

    url = f"sqlite:///{tmp_path}/state.db"
    long_id = "a-task-id-that-is-much-longer-than-thirty-five-characters-" + "x" * 40
    due = {"due_at": "2026-11-24T09:00:00+01:00", "reminder": {"before": "PT15M"}}
    with open_store(url) as store:
        for task_id, title in ((long_id, "long"), ("t1", "short")):
            fields = TaskFields.model_validate({"title": title, **due})
            task, _ = store.create_task(tasks.register("u1", task_id, fields, event_key="k"))
            store.save_reminder(reminders.schedule(task, None))
        failed = store.get_reminder("u1", "t1").model_copy(
            update={"status": reminders.ReminderStatus.FAILED, "error": "webhook answered 410"}
        )
        store.save_reminder(failed)
    table = nextup("tasks", "list", "--user", "u1", "--store", url).stdout.splitlines()
    header, *rows = table
    starts = [header.index(name) for name in ("STATUS", "DUE", "REMINDER", "TITLE")]
    for row in rows:
        cells = [row[at:].split("  ", 1)[0] for at in starts]
        assert cells[0] == "open" and cells[1].startswith("2026-11-24T09:00:00+01:00"), row
    by_title = {row.rsplit(None, 1)[-1]: row for row in rows}
    assert "pending 2026-11-24T07:45:00+00:00" in by_title["long"]
    assert "failed: webhook answered 410" in by_title["short"]
    listed = json.loads(nextup("tasks", "list", "--user", "u1", "--json", "--store", url).stdout)
    assert {row["task_id"]: row["reminder"]["status"] for row in listed} == {
        long_id: "pending",
        "t1": "failed",
    }
