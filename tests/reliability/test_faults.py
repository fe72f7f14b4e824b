"""Dependency faults: a fault-injecting proxy of our own (`faultproxy`) in front of the
store (moto server speaking DynamoDB), the SMTP server and the sink.

- Under latency, reset connections (before a request reaches the peer, and after the peer
  handled it but before the answer got back), DynamoDB throttling answers, lost SMTP
  replies and an outage of a few seconds, a run loses nothing: once the dependencies are
  back every task is completed once, has one next occurrence, every reminder went out and
  was announced. E-mail is the one effect that cannot be exactly-once: a mail whose `250`
  was lost is sent again with the same Message-ID; the test counts those.
- The circuit breaker opens and closes as configured: after `NEXTUP_BREAKER_FAILURES`
  failures it answers 503 at once with `Retry-After`, lets a trial through after
  `NEXTUP_BREAKER_RECOVERY` seconds, and closes when the dependency answers again.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from faultproxy import FaultProxy
from figures import record
from minibroker import Delivery, MiniBroker, percentile
from relstack import FunctionSet, chores_created

from harness import HttpRecorder, cloud_event, wait_until
from nextup.reminders import ReminderStatus
from nextup.tasks import TaskStatus

TASKS = 30


def port_of(url: str) -> int:
    return urlsplit(url).port


def task_events(run: str, count: int) -> tuple[list, list, list[tuple[str, str]]]:
    due = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    users = [f"fault-{run}-{n}" for n in range(5)]
    tasks = [(users[i % 5], f"{users[i % 5]}.t{i}") for i in range(count)]
    created = chores_created(run, tasks, due)
    completed = [
        cloud_event("todo.task.completed", {"user_id": u, "task_id": t}, id_=f"{run}-d{i}")
        for i, (u, t) in enumerate(tasks)
    ]
    return created, completed, tasks


def as_deliveries(broker: MiniBroker, events: list, copies: int = 1) -> list[Delivery]:
    out = []
    for headers, body in events:
        for _ in range(copies):
            out.append(broker.delivery(dict(headers), body))
    return out


def settle(fs: FunctionSet, broker: MiniBroker, run: str, phase: str) -> int:
    """Sweeps until no reminder is due or waiting for its announcement; how many."""
    sweeps = 0

    def settled() -> bool:
        nonlocal sweeps
        sweeps += 1
        tick = cloud_event("todo.reminder.due", {}, id_=f"{run}-{phase}-{sweeps}")
        broker.run(as_deliveries(broker, [tick]))
        return not fs.store.due_reminders(datetime.now(UTC) + timedelta(seconds=5)).items

    wait_until(settled, 60, "every reminder sent and announced")
    return sweeps


class Proxies:
    def __init__(self, moto: str, mail_port: int, sink: HttpRecorder) -> None:
        self.store = FaultProxy(port_of(moto), "http", seed=11).start()
        self.smtp = FaultProxy(mail_port, "smtp", seed=12).start()
        self.sink = FaultProxy(port_of(sink.url), "http", seed=13).start()

    def all(self) -> dict[str, FaultProxy]:
        return {"store": self.store, "smtp": self.smtp, "sink": self.sink}

    def stop(self) -> None:
        for proxy in self.all().values():
            proxy.stop()


def test_faults_everywhere_lose_nothing_and_everything_completes(tmp_path, moto_server):
    from harness import MailServer

    mail = MailServer().start()
    sink = HttpRecorder().start()
    proxies = Proxies(moto_server, mail.port, sink)
    with pytest.MonkeyPatch.context() as mp:
        fs = FunctionSet.start(
            "dynamodb",
            tmp_path,
            mp,
            moto=moto_server,
            store_endpoint=f"http://{proxies.store.url_host}",
            smtp_url=f"smtp://{proxies.smtp.url_host}",
            sink_url=f"http://{proxies.sink.url_host}/sink",
            mail=mail,
            sink=sink,
            env={
                "NEXTUP_RETRY_BUDGET": "3",
                "NEXTUP_BREAKER_FAILURES": "8",
                "NEXTUP_BREAKER_RECOVERY": "1",
                "NEXTUP_REMINDER_LEASE": "PT3S",
            },
        )
        stop_chaos = threading.Event()
        try:
            run = uuid.uuid4().hex[:6]
            created, completed, tasks = task_events(run, TASKS)
            broker = MiniBroker(fs.urls(), concurrency=12, max_attempts=200, seed=5)

            def chaos() -> None:
                """Faults all along, and one outage of each dependency in turn."""
                proxies.store.set(
                    latency=0.02, reset_request=0.03, reset_response=0.03, throttle=0.08
                )
                proxies.smtp.set(latency=0.01, lose_smtp_reply=0.15, reset_connect=0.05)
                proxies.sink.set(latency=0.01, reset_request=0.05, reset_response=0.05)
                for proxy in (proxies.store, proxies.smtp, proxies.sink):
                    if stop_chaos.wait(1.5):
                        return
                    proxy.down()
                    stop_chaos.wait(2.5)  # an outage of a few seconds
                    proxy.up()

            chaos_thread = threading.Thread(target=chaos, daemon=True)
            chaos_thread.start()
            ticks = [cloud_event("todo.reminder.due", {}, id_=f"{run}-a{n}") for n in range(6)]
            broker.run(as_deliveries(broker, created, 2) + as_deliveries(broker, ticks))
            settle(fs, broker, run, "a")  # the first reminders out before completing
            ticks = [cloud_event("todo.reminder.due", {}, id_=f"{run}-b{n}") for n in range(6)]
            broker.run(as_deliveries(broker, completed, 2) + as_deliveries(broker, ticks))
            chaos_thread.join(30)
            faults = {name: dict(p.counts) for name, p in proxies.all().items()}
            for proxy in proxies.all().values():
                proxy.set()
            # The dependencies are back: sweeps until nothing is due or unannounced.
            sweeps = settle(fs, broker, run, "final")
            stats = broker.stats
            assert stats.dead == [], [(a.delivery.type, a.status, a.body[:300]) for a in stats.dead]

            all_tasks = [t for user in {u for u, _ in tasks} for t in fs.store.list_tasks(user)]
            children = Counter(t.parent_task_id for t in all_tasks if t.parent_task_id)
            assert len(all_tasks) == 2 * TASKS, "nothing lost, nothing doubled"
            assert set(children.values()) == {1} and len(children) == TASKS
            for task in all_tasks:
                if task.parent_task_id is None:
                    assert task.status is TaskStatus.COMPLETED
                reminder = fs.store.get_reminder(task.user_id, task.task_id)
                assert reminder.status is ReminderStatus.SENT and reminder.announced, task.task_id

            mails = fs.mail_by_task()
            message_ids = fs.message_ids()
            assert len(mails) == 2 * TASKS, "every reminder went out"
            assert len(message_ids) == 2 * TASKS, "a resend carries the same Message-ID"
            resent = sum(n - 1 for n in message_ids.values())
            smtp = faults["smtp"]
            lost = smtp.get("lost_smtp_reply", 0) + smtp.get("reset_by_outage", 0)
            assert resent <= lost, "a mail is sent again only when its 250 was lost"
            sent_ids = {e["id"] for e in fs.sink_events() if e["type"] == "todo.reminder.sent"}
            assert len(sent_ids) == 2 * TASKS, "every reminder announced"

            latencies = stats.latencies(lambda a: a.status is not None)
            record(
                "faults[dynamodb]",
                tasks=TASKS,
                deliveries=stats.posts,
                statuses={str(k): v for k, v in sorted(stats.statuses.items(), key=str)},
                retries=stats.retries,
                faults_injected=faults,
                mails=sum(mails.values()),
                mails_resent_same_message_id=resent,
                sweeps_after_recovery=sweeps,
                p50_ms=round(percentile(latencies, 0.5), 1),
                p99_ms=round(percentile(latencies, 0.99), 1),
                seconds=round(stats.seconds, 1),
            )
        finally:
            stop_chaos.set()
            fs.stop()
            proxies.stop()


def created_event(user: str, n: int) -> tuple[dict, bytes]:
    return cloud_event(
        "todo.task.created",
        {"user_id": user, "task_id": f"{user}.b{n}", "title": "x"},
        id_=f"{user}-b{n}",
    )


CLIENT = threading.local()


def post(url: str, event: tuple[dict, bytes]) -> tuple[httpx.Response, float]:
    """POST on a kept-alive connection, so the time measured is the function's answer."""
    if getattr(CLIENT, "client", None) is None:
        CLIENT.client = httpx.Client(timeout=30)
    started = time.perf_counter()
    response = CLIENT.client.post(url, headers=event[0], content=event[1])
    return response, (time.perf_counter() - started) * 1000


@pytest.mark.parametrize("fault", ["outage", "throttling"])
def test_the_store_breaker_opens_fails_fast_and_closes_as_configured(fault, tmp_path, moto_server):
    proxy = FaultProxy(port_of(moto_server), "http", seed=3).start()
    recovery = 2.0
    with pytest.MonkeyPatch.context() as mp:
        fs = FunctionSet.start(
            "dynamodb",
            tmp_path,
            mp,
            moto=moto_server,
            names=("schedule-next",),
            store_endpoint=f"http://{proxy.url_host}",
            env={
                "NEXTUP_RETRY_BUDGET": "1",
                "NEXTUP_BREAKER_FAILURES": "3",
                "NEXTUP_BREAKER_RECOVERY": str(recovery),
            },
        )
        try:
            url = fs.functions["schedule-next"].url
            user = f"brk-{uuid.uuid4().hex[:6]}"
            assert post(url, created_event(user, 0))[0].status_code == 202
            if fault == "outage":
                proxy.down()
            else:
                proxy.set(throttle=1.0)
            answers = []  # (ms, Retry-After) of every answer while the store is failing
            # ms of the answers that tried the store / that the open breaker gave at once
            # (a throttling store counts the requests it saw; a store that is down cannot)
            tried, refused = [], []
            opened_at = None
            was_open = False  # the answer before this one said the circuit is open
            for n in range(1, 30):
                requests_before = proxy.counts["requests"]
                response, ms = post(url, created_event(user, n))
                answers.append((ms, response.headers.get("retry-after")))
                assert response.status_code == 503, response.text
                assert response.json()["field"] == "store"
                assert 1 <= int(response.headers["retry-after"]) <= recovery
                asked_store = proxy.counts["requests"] > requests_before
                says_open = "circuit open" in response.json()["error"]
                first_open, was_open = says_open and not was_open, was_open or says_open
                if first_open and answers[1:]:
                    # The first answer saying so may have found the breaker open, or opened
                    # it during its own retries (a store that is down cannot count them):
                    # it is neither kind for sure.
                    continue
                if not (was_open and not asked_store) or not answers[1:]:
                    # The first answer, and any that reached the store: each went through
                    # its retries against the failing store.
                    tried.append(ms)
                    continue
                opened_at = opened_at or time.monotonic()
                refused.append(ms)
                if len(refused) >= 5:
                    break
            assert opened_at is not None, f"the breaker never opened: {tried}"
            # Fails fast: without the retries each failure that opened it went through (a
            # ratio, not a wall-clock bound: both stretch alike on a loaded machine).
            assert max(refused) < min(tried) / 3, f"an open breaker fails fast: {tried} {refused}"
            # Still open until the recovery timeout; the dependency is still down, so the
            # trial after it fails and the breaker opens again.
            wait_until(lambda: time.monotonic() - opened_at > recovery, recovery + 1, "recovery")
            trial, trial_ms = post(url, created_event(user, 100))
            assert trial.status_code == 503
            again, again_ms = post(url, created_event(user, 101))
            assert again.status_code == 503 and "circuit open" in again.json()["error"]
            assert again_ms < min(tried) / 3
            if fault == "outage":
                proxy.up()
            else:
                proxy.set()
            back = time.monotonic()
            wait_until(
                lambda: post(url, created_event(user, 0))[0].status_code == 202,
                recovery + 5,
                "the breaker to close once the store is back",
            )
            closed_after = time.monotonic() - back
            assert closed_after <= recovery + 2
            # Closed again: every event refused meanwhile goes through on redelivery, once.
            for n in (*range(1, len(answers) + 1), 100, 101):
                response, _ = post(url, created_event(user, n))
                assert response.status_code == 202, response.text
            assert len(fs.store.list_tasks(user)) == len(answers) + 3
            record(
                f"breaker[store,{fault}]",
                failures_to_open=len(tried),
                open_answer_ms_max=round(max(refused), 1),
                retry_after=[a[1] for a in answers[-3:]],
                trial_answer_ms=round(trial_ms, 1),
                closed_seconds_after_recovery=round(closed_after, 2),
                configured_failures=3,
                configured_recovery_s=recovery,
                proxy=dict(proxy.counts),
            )
        finally:
            fs.stop()
            proxy.stop()


@pytest.mark.parametrize("dependency", ["smtp", "sink"])
def test_smtp_and_sink_breakers_open_and_close(dependency, tmp_path, moto_server):
    from harness import MailServer

    mail = MailServer().start()
    sink = HttpRecorder().start()
    smtp_proxy = FaultProxy(mail.port, "smtp", seed=4).start()
    sink_proxy = FaultProxy(port_of(sink.url), "http", seed=5).start()
    proxy = smtp_proxy if dependency == "smtp" else sink_proxy
    recovery = 2.0
    with pytest.MonkeyPatch.context() as mp:
        fs = FunctionSet.start(
            "sqlite",
            tmp_path,
            mp,
            names=("schedule-next", "send-reminder"),
            smtp_url=f"smtp://{smtp_proxy.url_host}",
            sink_url=f"http://{sink_proxy.url_host}/sink",
            mail=mail,
            sink=sink,
            env={
                "NEXTUP_RETRY_BUDGET": "1",
                "NEXTUP_BREAKER_FAILURES": "2",
                "NEXTUP_BREAKER_RECOVERY": str(recovery),
                "NEXTUP_REMINDER_LEASE": "PT2S",
            },
        )
        try:
            run = uuid.uuid4().hex[:6]
            created, _, tasks = task_events(run, 14)
            urls = fs.urls()
            proxy.down()
            answers = []
            for n in range(12):
                # A new due reminder each time, so every tick has something to send.
                assert post(urls["schedule-next"], created[n])[0].status_code == 202
                response, ms = post(
                    urls["send-reminder"], cloud_event("todo.reminder.due", {}, id_=f"{run}-t{n}")
                )
                answers.append((response.status_code, round(ms, 1)))
                assert response.status_code == 503, response.text
                assert response.json()["field"] == dependency
                assert int(response.headers["retry-after"]) >= 1
                if n >= 4:  # open by now: no retries inside the budget any more
                    assert "circuit open" in response.json()["error"], response.text
            fast = [ms for _, ms in answers[-4:]]
            assert max(fast) < 1000 * 0.5, f"an open breaker fails fast: {answers}"
            proxy.up()
            back = time.monotonic()
            for event in created[12:]:
                assert post(urls["schedule-next"], event)[0].status_code == 202

            def swept() -> bool:
                tick = cloud_event("todo.reminder.due", {}, id_=f"{run}-{uuid.uuid4().hex}")
                return post(urls["send-reminder"], tick)[0].status_code == 202

            wait_until(swept, recovery + 5, f"{dependency} back")
            closed_after = time.monotonic() - back
            wait_until(
                lambda: (
                    swept()
                    and not fs.store.due_reminders(datetime.now(UTC) + timedelta(seconds=5)).items
                ),
                20,
                "every reminder sent and announced",
            )
            message_ids = fs.message_ids()
            assert len(message_ids) == len(tasks), "every reminder sent"
            assert set(message_ids.values()) == {1}, "and only once, whatever was down"
            sent = {e["id"] for e in fs.sink_events() if e["type"] == "todo.reminder.sent"}
            assert len(sent) == len(tasks)
            record(
                f"breaker[{dependency}]",
                answers_while_down=answers,
                closed_seconds_after_recovery=round(closed_after, 2),
                configured_failures=2,
                configured_recovery_s=recovery,
            )
        finally:
            fs.stop()
            mail.stop()
            sink.stop()
            smtp_proxy.stop()
            sink_proxy.stop()
