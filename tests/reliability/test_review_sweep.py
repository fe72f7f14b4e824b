"""Review defects, class "one poisoned recipient": a reminder sweep's failure belongs to its
one reminder. The functions in-process (the fast layer) over each store backend, a real
aiosmtpd server, webhooks on a real local HTTP server, the sink a real HTTP recorder.

Why each test fails on the pre-fix code (c97ba0d; reasoned from its source, not run):

- test_poisoned_webhooks_fail_alone_and_every_innocent_is_mailed_in_the_same_tick:
  c97ba0d's `send_reminder._sweep` sent reminders one after another, and its webhook
  path (`notify.post_webhook` behind `Services._guarded("webhook", ...)`: retries inside
  the budget and one breaker shared by every user's webhook) turned a 5xx or an
  unreachable/hanging webhook into `Unavailable`, which `_deliver` re-raised after giving
  the lease back. The first poisoned webhook in due order (they are created between the
  innocents here) ended the whole tick with 503, so the innocents after it were not
  mailed in that tick: the "2xx" and "all 20 innocents mailed once" assertions fail. It
  had no `retry_at` (the "pending, attempts 1, retry_at later" assertions fail), never
  emitted `todo.reminder.failed` (the sink assertion for the 410s fails), and bounded a
  webhook by a fixed 10 s httpx timeout (there was no NEXTUP_WEBHOOK_TIMEOUT), so the
  hanging webhook alone breaks the "tick within WEBHOOK_TIMEOUT + 8 s" bound.
- test_retries_go_to_the_poisoned_reminders_only_once_their_retry_at_has_passed: without
  `retry_at` the old sweep retried a temporary failure (its lease given back) on every
  tick at once, so the second tick right after the first posted to the poisoned
  webhooks again (the "no request before retry_at" assertion fails), and editing
  `retry_at` had no effect.
- test_only_the_smtp_server_being_down_answers_503_after_everything_else_was_sent:
  c97ba0d raised the SMTP server's `Unavailable` out of the sweep at the first e-mail,
  so the webhook reminders behind it in due order were not sent before the 503, and
  nothing was announced (the sink and webhook assertions fail).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from relstack import FunctionSet

from harness import HttpRecorder, MailServer, Recorded, cloud_event, wait_until
from nextup.reminders import RETRY_FIRST, ReminderStatus
from peers import free_port

pytestmark = pytest.mark.fast

INNOCENTS = 20
WEBHOOK_TIMEOUT = 1.0
HANG_CAP = 20.0  # a hanging webhook answers after this at the latest (or at teardown)

# How each poisoned webhook answers: (status, headers), "hang", or "refused" (no server).
# kind -> (answer, temporary?, least seconds until the retry)
POISON = {
    "503": ((503, {}), True, RETRY_FIRST.total_seconds()),
    "503-retry-after": ((503, {"Retry-After": "90"}), True, 90.0),
    "429-retry-after": ((429, {"Retry-After": "120"}), True, 120.0),
    "500": ((500, {}), True, RETRY_FIRST.total_seconds()),
    "502": ((502, {}), True, RETRY_FIRST.total_seconds()),
    "408": ((408, {}), True, RETRY_FIRST.total_seconds()),
    "425": ((425, {}), True, RETRY_FIRST.total_seconds()),
    "hang": ("hang", True, RETRY_FIRST.total_seconds()),
    "refused": ("refused", True, RETRY_FIRST.total_seconds()),
    "410": ((410, {}), False, 0.0),
    "404": ((404, {}), False, 0.0),
    "400": ((400, {}), False, 0.0),
    "401": ((401, {}), False, 0.0),
    "302": ((302, {"Location": "http://127.0.0.1:9/elsewhere"}), False, 0.0),
}
TEMPORARY = [k for k, (_, temporary, _) in POISON.items() if temporary]
PERMANENT = [k for k, (_, temporary, _) in POISON.items() if not temporary]
# Temporary kinds that recover before their retry (answer 200 from then on).
RECOVERING = ("503", "500", "429-retry-after")


class Hooks:
    """Poisoned webhooks, each user's on a real HTTP server of its own (a burst of
    connections to one `http.server` would overflow its listen backlog of 5, and the
    dropped connects would look like hanging webhooks): /<kind>/<user>."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.recovered: set[str] = set()
        self.servers: dict[str, HttpRecorder] = {}
        self.refused_port = free_port()  # nothing listens there

    def respond(self, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        kind = request.path.strip("/").split("/")[0]
        if kind in self.recovered or kind == "ok":
            return 200, {}, b""
        answer = POISON[kind][0]
        if answer == "hang":
            self.release.wait(HANG_CAP)  # an event the test sets, never a clock
            return 200, {}, b""
        status, headers = answer
        return status, {"content-type": "text/plain", **headers}, b"no"

    def url(self, kind: str, user: str) -> str:
        if kind == "refused":
            return f"http://127.0.0.1:{self.refused_port}/{kind}/{user}"
        server = self.servers.setdefault(user, HttpRecorder(respond=self.respond).start())
        return f"{server.url}/{kind}/{user}"

    def hits(self) -> Counter:
        return Counter(
            r.path for s in self.servers.values() for r in list(s.requests) if r.method == "POST"
        )

    def stop(self) -> None:
        self.release.set()
        # Each `shutdown` waits for its server's next poll (0.5 s): all at once.
        stopping = [threading.Thread(target=s.stop) for s in self.servers.values()]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()


@pytest.fixture(scope="module")
def hooks(fs) -> Iterator[Hooks]:
    h = Hooks()
    yield h
    h.stop()


fs = FunctionSet.fixture(
    "fs",
    "review-sweep",
    names=("schedule-next", "send-reminder"),
    env={"NEXTUP_WEBHOOK_ALLOW": "127.0.0.1", "NEXTUP_WEBHOOK_TIMEOUT": str(WEBHOOK_TIMEOUT)},
    in_process=True,
)


def post(fs: FunctionSet, url: str, type_: str, data: dict) -> httpx.Response:
    headers, body = cloud_event(type_, data, id_=uuid.uuid4().hex, source="/review-sweep")
    return fs.http.post(url, headers=headers, content=body)


def create(fs: FunctionSet, user: str, task: str, notify: dict) -> None:
    """A task whose reminder is due now (due in a minute, reminded five before)."""
    due = datetime.now(UTC) + timedelta(minutes=1)
    data = {
        "user_id": user,
        "task_id": task,
        "title": f"task of {user}",
        "due_at": due.isoformat(),
        "reminder": {"before": "PT5M"},
        "notify": notify,
    }
    answer = post(fs, fs.url("schedule-next"), "todo.task.created", data)
    assert answer.status_code == 202, answer.text


def tick(fs: FunctionSet, url: str | None = None) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = post(fs, url or fs.url("send-reminder"), "dev.knative.sources.ping", {})
    return answer, time.monotonic() - started


def mails_to(fs: FunctionSet) -> Counter:
    return Counter(rcpt for d in fs.mail.received_raw() for rcpt in d.rcpt_tos)


def announcements(fs: FunctionSet, type_: str) -> Counter:
    return Counter(
        (e["data"]["user_id"], e["data"]["task_id"]) for e in fs.sink_events() if e["type"] == type_
    )


class World:
    """The users of the first test, kept for the second (same module, same store)."""

    innocents: list[str]
    poisoned: dict[str, list[str]]  # kind -> users


WORLDS: dict[str, World] = {}


def test_poisoned_webhooks_fail_alone_and_every_innocent_is_mailed_in_the_same_tick(fs, hooks):
    run = uuid.uuid4().hex[:6]
    world = World()
    world.innocents = [f"in-{run}-{i:02d}" for i in range(INNOCENTS)]
    # Two reminders of every poisoned kind, each its own user, created between innocents
    # so that poison comes before innocents in due order too.
    world.poisoned = {kind: [f"po-{run}-{kind}-{n}" for n in range(2)] for kind in POISON}
    kind_of = {u: k for k, users in world.poisoned.items() for u in users}
    poisoned = list(kind_of)
    for i, user in enumerate(world.innocents):
        create(fs, user, f"{user}.t", {"email": f"{user}@example.com"})
        for bad in poisoned[i * 2 : i * 2 + 2]:
            create(fs, bad, f"{bad}.t", {"webhook": hooks.url(kind_of[bad], bad)})
    for bad in poisoned[INNOCENTS * 2 :]:
        create(fs, bad, f"{bad}.t", {"webhook": hooks.url(kind_of[bad], bad)})
    before_tick = datetime.now(UTC)

    answer, took = tick(fs)

    assert 200 <= answer.status_code < 300, answer.text
    assert answer.json()["outcome"] == "swept", answer.text
    assert took < WEBHOOK_TIMEOUT + 8, f"a hanging webhook held the tick {took:.1f} s"
    mails = mails_to(fs)
    assert {u: mails[f"{u}@example.com"] for u in world.innocents} == dict.fromkeys(
        world.innocents, 1
    ), "every innocent mailed exactly once in the one tick"
    sent = announcements(fs, "todo.reminder.sent")
    for user in world.innocents:
        reminder = fs.store.get_reminder(user, f"{user}.t")
        assert reminder.status is ReminderStatus.SENT and reminder.announced, reminder
        assert sent[user, f"{user}.t"] == 1
    hits = hooks.hits()
    failed = announcements(fs, "todo.reminder.failed")
    failed_events = {
        (e["data"]["user_id"]): e for e in fs.sink_events() if e["type"] == "todo.reminder.failed"
    }
    for kind, users in world.poisoned.items():
        _, temporary, least = POISON[kind]
        for user in users:
            if kind != "refused":
                assert hits[f"/{kind}/{user}"] == 1, (kind, user, "posted once")
            reminder = fs.store.get_reminder(user, f"{user}.t")
            assert reminder.error, (kind, reminder)
            assert sent[user, f"{user}.t"] == 0, (kind, "a failure is not announced as sent")
            if temporary:
                assert reminder.status is ReminderStatus.PENDING, (kind, reminder)
                assert reminder.attempts == 1, (kind, reminder)
                assert reminder.retry_at is not None, (kind, reminder)
                assert reminder.retry_at >= before_tick + timedelta(seconds=least - 1), (
                    kind,
                    reminder.retry_at,
                )
                assert reminder.retry_at > datetime.now(UTC), (kind, reminder)
                assert reminder.lease_until is None, (kind, "the lease is given back")
                assert failed[user, f"{user}.t"] == 0, (kind, "not failed for good")
            else:
                assert reminder.status is ReminderStatus.FAILED, (kind, reminder)
                assert reminder.announced, (kind, reminder)
                assert failed[user, f"{user}.t"] == 1, (kind, "todo.reminder.failed once")
                data = failed_events[user]["data"]
                assert data["channel"] == "webhook" and data["error"] == reminder.error
                assert data["attempts"] == 1
    assert not [m for m in fs.mail.received_raw() if m.rcpt_tos[0].startswith("po-")]

    # A second tick right away: nobody twice, no poisoned webhook before its retry_at.
    again, _ = tick(fs)
    assert 200 <= again.status_code < 300, again.text
    assert mails_to(fs) == mails, "a second tick mailed someone again"
    assert hooks.hits() == hits, "a poisoned webhook was retried before its retry_at"
    assert announcements(fs, "todo.reminder.sent") == sent
    assert announcements(fs, "todo.reminder.failed") == failed
    WORLDS[fs.kind] = world


def test_retries_go_to_the_poisoned_reminders_only_once_their_retry_at_has_passed(fs, hooks):
    """The retry is brought forward by writing the stored reminder's `retry_at` (at its
    version, through the store) to a moment past: the real backoff is 30 s and more."""
    world = WORLDS.get(fs.kind)
    assert world is not None, "runs after the first test of this module"
    mails, hits = mails_to(fs), hooks.hits()
    failed_before = announcements(fs, "todo.reminder.failed")
    past = datetime.now(UTC) - timedelta(seconds=1)
    for kind in TEMPORARY:
        for user in world.poisoned[kind]:
            reminder = fs.store.get_reminder(user, f"{user}.t")
            fs.store.save_reminder(reminder.model_copy(update={"retry_at": past}))
    hooks.recovered.update(RECOVERING)
    before_tick = datetime.now(UTC)

    answer, _ = tick(fs)

    assert 200 <= answer.status_code < 300, answer.text
    assert mails_to(fs) == mails, "no innocent mailed again"
    now_hits = hooks.hits()
    sent = announcements(fs, "todo.reminder.sent")
    for kind, users in world.poisoned.items():
        _, temporary, least = POISON[kind]
        for user in users:
            path = f"/{kind}/{user}"
            reminder = fs.store.get_reminder(user, f"{user}.t")
            if not temporary:
                assert now_hits[path] == hits[path] == 1, (kind, "failed for good: not retried")
                assert reminder.status is ReminderStatus.FAILED
                continue
            if kind != "refused":
                assert now_hits[path] == hits[path] + 1, (kind, "retried once")
            assert reminder.attempts == 2, (kind, reminder)
            if kind in RECOVERING:
                assert reminder.status is ReminderStatus.SENT, (kind, reminder)
                assert sent[user, f"{user}.t"] == 1, (kind, "announced once sent")
            else:
                assert reminder.status is ReminderStatus.PENDING, (kind, reminder)
                # Backing off: the second wait is twice the first (or the Retry-After).
                wait = max(least, 2 * RETRY_FIRST.total_seconds())
                assert reminder.retry_at >= before_tick + timedelta(seconds=wait - 1), (
                    kind,
                    reminder.retry_at,
                )
    for user in world.innocents:
        assert fs.store.get_reminder(user, f"{user}.t").attempts == 1
    assert announcements(fs, "todo.reminder.failed") == failed_before


def test_only_the_smtp_server_being_down_answers_503_after_everything_else_was_sent(fs, hooks):
    """A second send-reminder on the same store whose SMTP URL has nobody listening (the
    reminders the tests above left are not due for a while): users with e-mail wait,
    everyone else is sent and announced before the tick answers 503."""
    smtp_port = free_port()
    down = fs.function(
        "send-reminder",
        {
            **fs.env,
            "NEXTUP_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "NEXTUP_RETRY_BUDGET": "0.5",
            "K_SINK": f"{fs.sink.url}/sink",
        },
    ).start()
    revived: MailServer | None = None
    try:
        run = uuid.uuid4().hex[:6]
        mailed = [f"m-{run}-{i}" for i in range(4)]
        hooked = [f"w-{run}-{i}" for i in range(6)]
        gone = [f"g-{run}-{i}" for i in range(2)]
        for m in mailed:
            create(fs, m, f"{m}.t", {"email": f"{m}@example.com"})
        for w in hooked:
            create(fs, w, f"{w}.t", {"webhook": hooks.url("ok", w)})
        for g in gone:
            create(fs, g, f"{g}.t", {"webhook": hooks.url("410", g)})
        mails = len(fs.mail.received_raw())

        answer, _ = tick(fs, down.url)

        assert answer.status_code == 503, answer.text
        assert answer.json()["field"] == "smtp", answer.text
        assert int(answer.headers["retry-after"]) >= 1
        hits = hooks.hits()
        assert all(hits[f"/ok/{w}"] == 1 for w in hooked), "webhooks sent before the 503"
        sent = announcements(fs, "todo.reminder.sent")
        assert all(sent[w, f"{w}.t"] == 1 for w in hooked), "and announced"
        failed = announcements(fs, "todo.reminder.failed")
        assert all(failed[g, f"{g}.t"] == 1 for g in gone)
        for m in mailed:
            reminder = fs.store.get_reminder(m, f"{m}.t")
            assert reminder.status is ReminderStatus.PENDING, reminder
            assert reminder.attempts == 0 and reminder.retry_at is None, (
                "waiting for the SMTP server keeps its place, no attempt counted",
                reminder,
            )
        # The SMTP server comes back where it was: the next ticks mail everyone once.
        revived = MailServer(smtp_port).start()

        def all_mailed() -> bool:
            answer, _ = tick(fs, down.url)
            return 200 <= answer.status_code < 300 and all(
                fs.store.get_reminder(m, f"{m}.t").status is ReminderStatus.SENT for m in mailed
            )

        wait_until(all_mailed, timeout=20, message="the mail once the SMTP server is back")
        rcpts = Counter(r for d in revived.received_raw() for r in d.rcpt_tos)
        assert rcpts == Counter(f"{m}@example.com" for m in mailed)
        assert hooks.hits() == hits, "nothing sent twice"
        assert announcements(fs, "todo.reminder.sent") - sent == Counter(
            (m, f"{m}.t") for m in mailed
        )
        assert len(fs.mail.received_raw()) == mails, "the other SMTP server got nothing"
    finally:
        if revived is not None:
            revived.stop()
        down.stop()
