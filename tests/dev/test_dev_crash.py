"""Crashes and scale-to-zero: `nextup dev` restarts what dies, commits an offset only once
its event reached a final outcome, and starts a scaled-to-zero function on demand."""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid

from devstack import DevStack, alive, wait_for

from harness import cloud_event, wait_until
from nextup.store import open_store

TASKS = 300
USERS = 10


def test_sigkill_of_a_function_and_the_dispatcher_mid_run_loses_and_doubles_nothing(tmp_path):
    dev = DevStack(tmp_path, "--quiet").start()
    try:
        run = uuid.uuid4().hex[:6]
        users = [f"crash-{run}-{n}" for n in range(USERS)]
        tasks = [(users[i % USERS], f"{users[i % USERS]}.t{i}") for i in range(TASKS)]
        dev.post_many(
            cloud_event(
                "todo.task.created",
                {
                    "user_id": user,
                    "task_id": task,
                    "title": "Take out the bins",
                    "due_at": "2026-11-23T19:00:00Z",
                    "recurrence": {"rule": "FREQ=WEEKLY"},
                },
                id_=f"{run}-c{i}",
            )
            for i, (user, task) in enumerate(tasks)
        )
        store = open_store(dev.store_url)

        def next_occurrences() -> list:
            return [
                t for user in users for t in store.list_tasks(user) if t.parent_task_id is not None
            ]

        def registered() -> bool:
            return sum(len(store.list_tasks(user)) for user in users) >= TASKS

        wait_for(registered, 60, "tasks registered")
        completions = [
            cloud_event(
                "todo.task.completed", {"user_id": user, "task_id": task}, id_=f"{run}-d{i}"
            )
            for i, (user, task) in enumerate(tasks)
        ]
        # Posted while the test watches: the pipeline keeps pace with the posting now, so
        # waiting for the posts first would find the run over before any crash.
        posting = threading.Thread(target=dev.post_many, args=(completions, 4), daemon=True)
        posting.start()
        # In the middle of the run: some next occurrences exist, most do not yet.
        wait_for(lambda: len(next_occurrences()) >= 20, 60, "the run to be under way", 0.05)
        before = dev.state()["pids"]
        assert len(next_occurrences()) < TASKS, "the run finished before the crash: make it longer"
        os.kill(before["complete-task"], signal.SIGKILL)
        os.kill(before["dispatcher"], signal.SIGKILL)

        def restarted() -> bool:
            pids = dev.state()["pids"]
            return all(
                pids[name] and pids[name] != before[name] and alive(pids[name])
                for name in ("complete-task", "dispatcher")
            )

        wait_until(restarted, 60, "the function and the dispatcher to be restarted")
        dev.remember_pids()
        posting.join(120)
        # The same completions delivered again on top, as a producer retrying would.
        dev.post_many(completions[: TASKS // 3])
        wait_for(lambda: len(next_occurrences()) >= TASKS, 120, "every next occurrence", 0.5)
        dev.wait_drained(120)
        nexts = next_occurrences()
        assert len(nexts) == TASKS, "doubled"
        assert {t.parent_task_id for t in nexts} == {task for _, task in tasks}, "lost"
        assert dev.dead_letters() == []
        log = dev.log()
        assert "complete-task crashed" in log and "dispatcher crashed" in log
        store.close()
    finally:
        dev.stop()


def test_scale_to_zero_starts_a_function_on_its_first_event_and_stops_it_when_idle(tmp_path):
    dev = DevStack(tmp_path, "--scale-to-zero", "--idle", "1").start()
    try:
        assert dev.state()["pids"]["health"] is None, "nothing runs before the first event"
        dev.post(*cloud_event("todo.health.probe", {}, id_="probe-1"))
        wait_until(
            lambda: dev.status()["triggers"]["health-probe"]["delivered"] == 1, 60, "delivery"
        )
        first = dev.state()["pids"]["health"]
        assert first and alive(first)
        dev.pids.add(first)
        wait_until(lambda: dev.state()["pids"]["health"] is None, 30, "scale to zero")
        assert not alive(first)
        dev.post(*cloud_event("todo.health.probe", {}, id_="probe-2"))
        wait_until(
            lambda: dev.status()["triggers"]["health-probe"]["delivered"] == 2, 60, "delivery"
        )
        cold = re.findall(r"cold .* health started in (\d+) ms", dev.log())
        assert len(cold) == 2, dev.log()
        # The reply travelled back through the broker like any other event.
        assert dev.status()["triggers"]["health-probe"]["replies"] == 2
        dev.remember_pids()
    finally:
        dev.stop()
