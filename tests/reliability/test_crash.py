"""Crashes: `nextup dev` (Kafka, the dispatcher as its own process, the functions) runs a
few thousand events while processes are SIGKILLed at random points and restarted by it:
complete-task, schedule-next, send-reminder and the dispatcher, several times each run.

Zero next occurrences lost, zero doubled, no dead letters. E-mail cannot be exactly-once:
a send-reminder killed between the SMTP hand-over and recording it sends that reminder
again once its lease runs out, with the same Message-ID. The test counts those resends.
"""

from __future__ import annotations

import email
import os
import random
import signal
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from figures import record
from relstack import chores_created

from dev.devstack import DevStack, alive, wait_for
from harness import cloud_event, wait_until
from nextup.reminders import ReminderStatus
from nextup.store import open_store
from nextup.tasks import TaskStatus

TASKS = 200
USERS = 8
VICTIMS = ("complete-task", "schedule-next", "send-reminder", "dispatcher")


def test_sigkill_at_random_points_loses_and_doubles_nothing(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    with pytest.MonkeyPatch.context() as mp:
        # A killed sender's lease runs out soon, so its reminders go out again in the run.
        mp.setenv("NEXTUP_REMINDER_LEASE", "PT4S")
        dev = DevStack(tmp_path, "--quiet").start()
    kills: Counter = Counter()
    stop = threading.Event()
    try:
        run = uuid.uuid4().hex[:6]
        users = [f"crash-{run}-{n}" for n in range(USERS)]
        tasks = [(users[i % USERS], f"{users[i % USERS]}.t{i}") for i in range(TASKS)]
        due = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
        store = open_store(dev.store_url)

        def crash_loop() -> None:
            """Kill a random process at a random moment, wait for its restart, repeat."""
            order = rng.sample(VICTIMS, len(VICTIMS))  # each at least once, then at random
            while not stop.wait(rng.uniform(0.3, 1.5)) or order:
                victim = order.pop() if order else rng.choice(VICTIMS)
                before = dev.state()["pids"]
                pid = before.get(victim)
                if not pid or not alive(pid):
                    continue
                os.kill(pid, signal.SIGKILL)
                kills[victim] += 1
                wait_until(
                    lambda v=victim, p=pid: (
                        (dev.state()["pids"].get(v) or p) != p and alive(dev.state()["pids"][v])
                    ),
                    60,
                    f"{victim} to be restarted",
                )
                dev.remember_pids()

        killer = threading.Thread(target=crash_loop, daemon=True)
        killer.start()
        dev.post_many(chores_created(run, tasks, due))
        wait_for(lambda: sum(len(store.list_tasks(u)) for u in users) >= TASKS, 120, "registered")
        completions = [
            cloud_event("todo.task.completed", {"user_id": u, "task_id": t}, id_=f"{run}-d{i}")
            for i, (u, t) in enumerate(tasks)
        ]
        sweeps = [cloud_event("todo.reminder.due", {}, id_=f"{run}-s{n}") for n in range(12)]
        mixed = completions + sweeps
        rng.shuffle(mixed)
        dev.post_many(mixed)

        def nexts() -> list:
            return [t for u in users for t in store.list_tasks(u) if t.parent_task_id]

        wait_for(lambda: len(nexts()) >= TASKS, 180, "every next occurrence", 0.5)
        stop.set()
        killer.join(70)
        # Sweeps until every reminder is sent and announced (leases of killed senders
        # run out meanwhile).
        n = 0

        def settled() -> bool:
            nonlocal n
            n += 1
            dev.post(*cloud_event("todo.reminder.due", {}, id_=f"{run}-final-{n}"))
            every = [t for u in users for t in store.list_tasks(u)]
            states = Counter()
            for t in every:
                r = store.get_reminder(t.user_id, t.task_id)
                kind = "next" if t.parent_task_id else "first"
                states[(kind, r.status.value, r.announced) if r else (kind, None)] += 1
            last_states.clear()
            last_states.update(states)
            # A first occurrence completed before its reminder went out has it cancelled;
            # every next occurrence's reminder is due and must go out, once, announced.
            return (
                set(states)
                <= {
                    ("next", "sent", True),
                    ("first", "sent", True),
                    ("first", "cancelled", False),
                }
                and states[("next", "sent", True)] == TASKS
            )

        last_states: Counter = Counter()
        try:
            wait_for(settled, 120, "every reminder sent and announced", 0.5)
        except AssertionError:
            raise AssertionError(f"reminders not settled: {last_states}\n{dev.log()}") from None
        dev.wait_drained(120)

        every = [t for u in users for t in store.list_tasks(u)]
        children = Counter(t.parent_task_id for t in every if t.parent_task_id)
        assert len(every) == 2 * TASKS, "doubled"
        assert set(children) == {task for _, task in tasks}, "lost"
        assert set(children.values()) == {1}, "doubled"
        assert all(t.status is TaskStatus.COMPLETED for t in every if not t.parent_task_id)
        assert dev.dead_letters() == []

        mails = [email.message_from_bytes(p.read_bytes()) for p in dev.mails()]
        by_task = Counter(m["X-Nextup-Task"] for m in mails)
        ids_by_task: dict[str, set] = {}
        for m in mails:
            ids_by_task.setdefault(m["X-Nextup-Task"], set()).add(m["Message-ID"])
        sent = {
            t.task_id
            for t in every
            if store.get_reminder(t.user_id, t.task_id).status is ReminderStatus.SENT
        }
        assert sent <= set(by_task), "every reminder marked sent went out"
        assert all(len(ids) == 1 for ids in ids_by_task.values()), "a resend has the same id"
        resent = sum(n - 1 for n in by_task.values())
        assert sum(kills.values()) >= 4, f"too few crashes to mean anything: {kills}"
        log = dev.log()
        for victim in kills:
            assert f"{victim} crashed" in log, victim
        status = dev.status()
        record(
            "crash[nextup dev, sqlite]",
            seed=seed,
            tasks=TASKS,
            events_posted=2 * TASKS + len(sweeps) + n,
            broker_records=status["records"],
            kills=dict(kills),
            next_occurrences=len(children),
            lost=0,
            doubled=0,
            reminders_sent=len(sent),
            reminders_cancelled_by_completion=2 * TASKS - len(sent),
            mails=len(mails),
            mails_resent_same_message_id=resent,
            dead_letters=0,
        )
        store.close()
    finally:
        stop.set()
        dev.stop()
