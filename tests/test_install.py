"""nextup as pip installs it, without a checkout: the core distribution carries none of the
local runtime, and `nextup dev` from the two installed distributions runs the functions on
the manifests it renders from their declarations, in a directory that is no checkout.

Both are installed with pip from copies of this tree (so the build writes nothing into
it), each into a directory of its own; PYTHONPATH puts those ahead of the editable
installs of the virtualenv, and the test asserts that the processes really run them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from harness import ROOT, cloud_event, wait_until
from nextup.store import open_store
from nextup.tasks import TaskStatus
from nextup_dev.child import DevChild
from nextup_dev.manifests import RENDERED

PIP_TIMEOUT = 300


def pip_install(source: Path, target: Path) -> None:
    """`pip install --no-deps --target` with this interpreter's pip: the package as it
    is built for anyone, its dependencies left to the virtualenv."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"pip install {source} failed:\n{done.stdout}{done.stderr}"


def copy_tree(names: list[str], source: Path, into: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    into.mkdir(parents=True)
    for name in names:
        if (source / name).is_dir():
            shutil.copytree(source / name, into / name, ignore=ignore)
        else:
            shutil.copy2(source / name, into / name)
    return into


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("install")
    core_src = copy_tree(["pyproject.toml", "README.md", "functions"], ROOT, base / "core-src")
    local_src = copy_tree(["pyproject.toml", "nextup_dev"], ROOT / "local", base / "local-src")
    core, local = base / "core", base / "local"
    pip_install(core_src, core)
    pip_install(local_src, local)
    return core, local


def packages(directory: Path) -> set[str]:
    return {
        p.name for p in directory.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")
    } - {"bin"}


def test_the_core_carries_no_module_of_the_local_runtime(installed) -> None:
    core, _ = installed
    assert packages(core) == {"nextup"}
    assert not (core / "nextup" / "dev").exists()
    found = sorted(str(p.relative_to(core)) for p in core.rglob("*nextup_dev*"))
    assert found == [], found


def test_the_local_runtime_carries_its_templates_and_not_the_core(installed) -> None:
    _, local = installed
    assert packages(local) == {"nextup_dev"}
    templates = local / "nextup_dev" / "render" / "templates"
    assert (templates / "trigger.yaml").is_file()
    assert (templates / "knative-service.yaml").is_file()


def environment(core: Path, local: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = f"{core}{os.pathsep}{local}"
    return env


def test_nextup_dev_runs_from_the_installed_packages_outside_a_checkout(
    installed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core, local = installed
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert ROOT not in work.resolve().parents and not (work / "eventing").exists()
    env = environment(core, local)
    # What this environment imports, from where nextup dev will run.
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, nextup, nextup.cli, nextup_dev, nextup_dev.render; "
            "print(json.dumps([nextup.__file__, nextup_dev.__file__]))",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    nextup_file, nextup_dev_file = map(Path, json.loads(where.stdout))
    assert nextup_file.is_relative_to(core), nextup_file
    assert nextup_dev_file.is_relative_to(local), nextup_dev_file

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NEXTUP_STORE_URL", raising=False)
    dev = DevChild(work, "--quiet").start()
    try:
        _deliver_and_handle(dev, core)
    except BaseException:
        print(dev.log())
        raise
    finally:
        dev.stop()


def _deliver_and_handle(dev: DevChild, core: Path) -> None:
    # It runs the manifests it rendered: there is no checkout to read them from; so does
    # its dispatcher, a process of its own.
    assert f"manifests       {RENDERED}" in dev.log()
    dispatcher_log = (dev.state_dir / "logs" / "dispatcher.log").read_text()
    assert f"Triggers of {RENDERED}" in dispatcher_log, dispatcher_log[-2000:]
    # Its functions run the installed core's entry point.
    state = dev.state()
    for name, pid in state["pids"].items():
        if name in ("nextup-dev", "kafka", "dispatcher") or pid is None:
            continue
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert str(core / "nextup" / "serve.py").encode() in argv, (name, argv)

    run = uuid.uuid4().hex[:8]
    user, task = f"inst-{run}", f"inst-{run}.t1"
    created = cloud_event(
        "todo.task.created",
        {
            "user_id": user,
            "task_id": task,
            "title": "Water the plants",
            "due_at": "2026-11-23T09:00:00+01:00",
            "timezone": "Europe/Berlin",
            "recurrence": {"rule": "FREQ=DAILY"},
        },
        id_=f"{run}-created",
    )
    completed = cloud_event(
        "todo.task.completed",
        {"user_id": user, "task_id": task, "completed_at": "2026-11-23T10:00:00+01:00"},
        id_=f"{run}-completed",
    )
    post(dev, *created)

    def tasks() -> list:
        store = open_store(dev.store_url)
        try:
            return store.list_tasks(user)
        finally:
            store.close()

    wait_until(lambda: tasks(), 60, f"task {task} registered by schedule-next in the store")
    post(dev, *completed)
    # complete-task answers todo.occurrence.requested; the broker takes the reply to
    # schedule-next, which creates the next occurrence: two Triggers and a reply, rendered.
    nexts = wait_until(
        lambda: [t for t in tasks() if t.parent_task_id == task],
        60,
        "the next occurrence created through complete-task's reply",
    )
    assert len(nexts) == 1 and nexts[0].status is TaskStatus.OPEN

    def drained() -> dict | None:
        status = dev.status()
        return status if dev.drained(status) else None

    status = wait_until(drained, 60, "every Trigger drained")
    triggers = status["triggers"]
    assert triggers["schedule-next-task-created"]["delivered"] == 1
    assert triggers["complete-task-task-completed"]["delivered"] == 1
    assert triggers["schedule-next-occurrence-requested"]["delivered"] == 1
    assert sum(t["dead_lettered"] + t["dropped"] for t in triggers.values()) == 0


def post(dev: DevChild, headers: dict, body: bytes) -> None:
    request = urllib.request.Request(dev.ingress, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202, answer.status
