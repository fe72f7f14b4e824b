"""One recipient never stops everyone: every way a send can fail is classified, against
real peers answering each case (aiosmtpd scripted per recipient and per command, raw TCP
peers that greet with 421, reset or never answer, local HTTP servers).

- `PermanentFailure`: this recipient never will (SMTP 5xx to RCPT or DATA, a webhook's
  4xx or redirect, an address or URL that cannot be sent to, a host that does not exist).
- `RecipientUnavailable`: this recipient not now (SMTP 4xx to RCPT or DATA, a webhook's
  5xx, 408, 425, 429 with its Retry-After, a webhook that hangs, refuses or resets).
- `Unavailable` (503): the SMTP server itself (refused connection, silence, 421 at any
  point, a dropped connection, a refused sender or login). Never for a webhook.

Only the last opens the SMTP breaker; webhooks share no breaker at all. A stored task
from before the address and URL rules tightened fails its own reminder, never the sweep.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from figures import record
from relstack import FunctionSet

from harness import HANG_UP, HttpRecorder, MailServer, RawPeer, cloud_event, wait_until
from nextup import webhooks
from nextup.config import Settings
from nextup.errors import Unavailable
from nextup.fields import NotifySpec
from nextup.notify import (
    Mailer,
    Message,
    PermanentFailure,
    RecipientFailure,
    RecipientUnavailable,
    SmtpConfig,
)
from nextup.reminders import ReminderStatus
from nextup.services import Services
from nextup_dev.stores import SQLITE
from peers import free_port

pytestmark = pytest.mark.fast

OUTCOMES: Counter = Counter()  # (channel, case, outcome), for the figures

# -- SMTP ---------------------------------------------------------------------------------

# recipient -> what the server answers to RCPT TO for it
RCPT = {
    "busy@example.com": "450 4.2.1 mailbox busy, try later",
    "full@example.com": "452 4.2.2 mailbox full",
    "gone@example.com": "550 5.1.1 no such user",
    "never@example.com": "553 5.7.1 relaying denied",
    "closing@example.com": "421 4.3.2 shutting down",
    "auth@example.com": "530 5.7.0 authentication required",
    "hangup@example.com": HANG_UP,
}
# first recipient -> what the server answers to the message (DATA)
DATA = {
    "greylisted@example.com": "451 4.7.1 greylisted",
    "spam@example.com": "554 5.7.1 message refused",
    "tired@example.com": "421 4.4.2 timeout, closing",
}
MAIL = {"refuse-sender@example.com": "550 5.7.1 sender refused"}


class Script:
    """What the scripted server answers, and how often each recipient was tried."""

    def __init__(self) -> None:
        self.tries: Counter = Counter()
        self.mail_reply: str | None = None

    def __call__(self, verb: str, address: str) -> str | None:
        if verb == "MAIL":
            return self.mail_reply
        if verb == "RCPT":
            self.tries[address] += 1
            return RCPT.get(address)
        return DATA.get(address)


@pytest.fixture(scope="module")
def script() -> Script:
    return Script()


@pytest.fixture(scope="module")
def smtp(script) -> Iterator[MailServer]:
    server = MailServer(script=script).start()
    yield server
    server.stop()


def config(port: int, timeout: float = 2.0) -> SmtpConfig:
    return SmtpConfig(
        host="127.0.0.1",
        port=port,
        username=None,
        password=None,
        tls=False,
        starttls=False,
        sender="nextup <reminders@nextup.example>",
        timeout=timeout,
    )


def message(task: str = "t-1") -> Message:
    return Message(
        user_id="u-1",
        task_id=task,
        title="Water the plants",
        due_at=None,
        remind_at="2026-11-24T08:45:00+00:00",
        message_id=f"<{uuid.uuid4().hex}@nextup.example>",
    )


def outcome_of(send) -> BaseException | None:
    try:
        send()
    except (RecipientFailure, Unavailable) as exc:
        return exc
    return None


SMTP_CASES = [
    ("busy@example.com", RecipientUnavailable),
    ("full@example.com", RecipientUnavailable),
    ("gone@example.com", PermanentFailure),
    ("never@example.com", PermanentFailure),
    ("closing@example.com", Unavailable),
    ("auth@example.com", Unavailable),
    ("hangup@example.com", Unavailable),
    ("greylisted@example.com", RecipientUnavailable),
    ("spam@example.com", PermanentFailure),
    ("tired@example.com", Unavailable),
    ("ü@example.com", PermanentFailure),  # needs SMTPUTF8, which the server lacks
    ("a\x00@example.com", PermanentFailure),
    ("=?utf-8?b?YQ==?=@example.com", PermanentFailure),
]


@pytest.mark.parametrize("to, expected", SMTP_CASES, ids=[c[0] for c in SMTP_CASES])
def test_smtp_answers_for_one_recipient_are_classified(smtp, to, expected):
    mailer = Mailer(config(smtp.port))
    failure = outcome_of(lambda: mailer.send(to, message()))
    OUTCOMES["smtp", to.split("@")[0], type(failure).__name__] += 1
    assert type(failure) is expected, failure
    # The server is fine for everyone else, whatever this recipient got.
    before = len(smtp.received_raw())
    mailer.send("ok@example.com", message())
    assert len(smtp.received_raw()) == before + 1


def test_a_refused_sender_is_the_servers_problem(smtp, script):
    script.mail_reply = "550 5.7.1 sender refused"
    try:
        failure = outcome_of(lambda: Mailer(config(smtp.port)).send("ok@example.com", message()))
    finally:
        script.mail_reply = None
    assert isinstance(failure, Unavailable)
    script.mail_reply = "421 4.3.2 closing"
    try:
        failure = outcome_of(lambda: Mailer(config(smtp.port)).send("ok@example.com", message()))
    finally:
        script.mail_reply = None
    assert isinstance(failure, Unavailable)


@pytest.mark.parametrize(
    "peer",
    [
        pytest.param(lambda: RawPeer(say=b"421 4.3.2 too busy, come back later\r\n"), id="421"),
        pytest.param(lambda: RawPeer(say=b"554 5.3.2 no service here\r\n"), id="554 greeting"),
        pytest.param(lambda: RawPeer(reset=True), id="reset"),
        pytest.param(lambda: RawPeer(), id="silent"),
        pytest.param(None, id="closed port"),
    ],
)
def test_an_smtp_server_that_is_not_there_is_unavailable(peer):
    raw = peer() if peer is not None else None
    port = raw.port if raw is not None else free_port()
    started = time.monotonic()
    try:
        mailer = Mailer(config(port, timeout=0.3))
        failure = outcome_of(lambda: mailer.send("ok@x.example", message()))
    finally:
        if raw is not None:
            raw.stop()
    assert isinstance(failure, Unavailable) and failure.field == "smtp", failure
    assert time.monotonic() - started < 2.0, "bounded by the SMTP timeout"
    OUTCOMES["smtp", "server away", type(failure).__name__] += 1


def services_for(smtp_port: int, **settings) -> Services:
    return Services(
        Settings(
            smtp_url=f"smtp://127.0.0.1:{smtp_port}",
            smtp_from="nextup <reminders@nextup.example>",
            **settings,
        ),
        "send-reminder",
    )


def test_recipient_failures_are_not_retried_and_never_open_the_smtp_breaker(smtp, script):
    services = services_for(smtp.port, breaker_failures=2, retry_budget=2.0)

    async def scenario() -> list[str]:
        seen = []
        for to in ["busy@example.com", "gone@example.com"] * 3 + ["greylisted@example.com"] * 2:
            try:
                await services.mail(to, message())
            except RecipientFailure as exc:
                seen.append(type(exc).__name__)
        await services.mail("ok@example.com", message())  # the breaker is closed
        return seen

    tries_before = script.tries["busy@example.com"]
    before = len(smtp.received_raw())
    seen = asyncio.run(scenario())
    assert seen == ["RecipientUnavailable", "PermanentFailure"] * 3 + ["RecipientUnavailable"] * 2
    assert script.tries["busy@example.com"] - tries_before == 3, "once per send, no retries"
    assert services.breaker("smtp").failures == 0
    assert len(smtp.received_raw()) == before + 1


def test_a_recipient_failure_in_the_breakers_trial_does_not_wedge_it(script):
    """A half-open breaker lets one trial through; a trial that ended with one recipient's
    refusal used to leave the trial running forever, the breaker answering 503 to all."""
    port = free_port()
    services = services_for(port, breaker_failures=1, breaker_recovery=0.3, retry_budget=0.5)

    async def down() -> BaseException:
        try:
            await services.mail("ok@example.com", message())
        except Unavailable as exc:
            return exc
        raise AssertionError("nothing listens there")

    asyncio.run(down())
    assert services.breaker("smtp").state.value == "open"
    server = MailServer(port, script=script).start()
    try:
        # After the recovery timeout the next call is the breaker's one trial.
        wait_until(lambda: services.breaker("smtp").state.value == "half-open", timeout=2)
        with pytest.raises(PermanentFailure):
            asyncio.run(services.mail("gone@example.com", message()))
        asyncio.run(services.mail("ok@example.com", message()))
        assert len(server.received_raw()) == 1
        assert services.breaker("smtp").state.value == "closed"
    finally:
        server.stop()


# -- webhooks -------------------------------------------------------------------------------

LOCAL = webhooks.WebhookPolicy(allow=("127.0.0.1",))


def in_(seconds: float):
    """An HTTP date `seconds` from when the server answers."""
    return lambda: format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


# case -> status, extra headers (a callable is called when answering), expected outcome,
# expected retry_after (None: not given)
WEBHOOK_CASES = {
    "200": (200, {}, None, None),
    "204": (204, {}, None, None),
    "500": (500, {}, RecipientUnavailable, None),
    "502": (502, {}, RecipientUnavailable, None),
    "503-retry-after-seconds": (503, {"Retry-After": "120"}, RecipientUnavailable, 120.0),
    "429-retry-after-date": (429, {"Retry-After": in_(60)}, RecipientUnavailable, 60.0),
    "429-retry-after-garbage": (429, {"Retry-After": "soon"}, RecipientUnavailable, None),
    "429-retry-after-past": (429, {"Retry-After": in_(-60)}, RecipientUnavailable, 0.0),
    "429-retry-after-huge": (429, {"Retry-After": "9" * 40}, RecipientUnavailable, 86400.0),
    "408": (408, {}, RecipientUnavailable, None),
    "425": (425, {}, RecipientUnavailable, None),
    "400": (400, {}, PermanentFailure, None),
    "401": (401, {}, PermanentFailure, None),
    "404": (404, {}, PermanentFailure, None),
    "410": (410, {}, PermanentFailure, None),
    "302": (302, {"Location": "http://169.254.169.254/"}, PermanentFailure, None),
}


@pytest.fixture(scope="module")
def hook() -> Iterator[HttpRecorder]:
    def respond(request):
        status, headers, _, _ = WEBHOOK_CASES[request.path.strip("/")]
        # A date is made when answering, so the wait it means is the one expected.
        headers = {k: v() if callable(v) else v for k, v in headers.items()}
        return status, {"content-type": "text/plain", **headers}, b"x" * 100_000

    server = HttpRecorder(respond=respond).start()
    yield server
    server.stop()


def post(url: str, timeout: float = 2.0) -> BaseException | None:
    try:
        asyncio.run(webhooks.post(url, message(), policy=LOCAL, timeout=timeout))
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize("case", WEBHOOK_CASES)
def test_webhook_answers_are_classified(hook, case):
    _, _, expected, retry_after = WEBHOOK_CASES[case]
    before = len(hook.requests)
    failure = post(f"{hook.url}/{case}")
    OUTCOMES["webhook", case, "delivered" if failure is None else type(failure).__name__] += 1
    assert not isinstance(failure, Unavailable), "a webhook is never the shared dependency"
    assert len(hook.requests) == before + 1, "exactly one request, redirects not followed"
    if expected is None:
        assert failure is None
        return
    assert type(failure) is expected, failure
    if isinstance(failure, RecipientUnavailable):
        if retry_after is None:
            assert failure.retry_after is None
        else:
            assert failure.retry_after == pytest.approx(retry_after, abs=2)


@pytest.mark.parametrize(
    "peer",
    [
        pytest.param(lambda: RawPeer(), id="silent"),
        pytest.param(lambda: RawPeer(reset=True), id="reset"),
        pytest.param(lambda: RawPeer(say=b"HTTP/1.1 200 OK\r\n"), id="half an answer"),
        pytest.param(lambda: RawPeer(say=b"\x16\x03\x01 not http"), id="garbage"),
        pytest.param(None, id="connection refused"),
    ],
)
def test_a_webhook_that_hangs_resets_or_refuses_is_unavailable_for_now(peer):
    raw = peer() if peer is not None else None
    port = raw.port if raw is not None else free_port()
    started = time.monotonic()
    try:
        failure = post(f"http://127.0.0.1:{port}/hook", timeout=0.5)
    finally:
        if raw is not None:
            raw.stop()
    assert type(failure) is RecipientUnavailable, failure
    assert time.monotonic() - started < 1.5, "one timeout bounds the whole request"
    OUTCOMES["webhook", "peer", type(failure).__name__] += 1


def test_a_slow_answer_is_cut_at_the_timeout():
    release = []

    def respond(request):
        wait_until(lambda: release, timeout=5, message="the test to end")
        return 200, {}, b""

    server = HttpRecorder(respond=respond).start()
    try:
        started = time.monotonic()
        failure = post(f"{server.url}/slow", timeout=0.5)
        assert type(failure) is RecipientUnavailable and "0.5 s" in str(failure)
        assert time.monotonic() - started < 1.5
    finally:
        release.append(True)
        server.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/",
        "http://127.0.0.1:abc/",
        "http://[::1/",
        "http://a..b/",
        "http://①.1.1.1/",
        "http://user:pw@127.0.0.1/",
        "ftp://127.0.0.1/",
        "not a url",
    ],
)
def test_a_url_that_slipped_through_fails_permanently_and_alone(url):
    failure = post(url)
    assert type(failure) is PermanentFailure, failure
    assert "pw" not in str(failure)


def test_failing_webhooks_never_hold_back_other_webhooks(hook):
    """Through Services, as the sweep calls it: no shared retries or breaker for webhooks,
    and a total timeout from the settings."""
    services = Services(
        Settings(webhook_allow=("127.0.0.1",), breaker_failures=2, webhook_timeout=0.5),
        "send-reminder",
    )
    silent = RawPeer()

    async def scenario() -> list[str]:
        seen = []
        for url in [f"{hook.url}/503-retry-after-seconds", f"http://127.0.0.1:{silent.port}/"] * 3:
            try:
                await services.webhook(url, message())
            except RecipientFailure as exc:
                seen.append(type(exc).__name__)
        await services.webhook(f"{hook.url}/200", message())
        return seen

    try:
        started = time.monotonic()
        assert asyncio.run(scenario()) == ["RecipientUnavailable"] * 6
        assert time.monotonic() - started < 4.0, "each silent webhook within its 0.5 s"
    finally:
        silent.stop()
    assert "webhook" not in services._breakers


# -- the sweep: stored tasks from before the rules tightened ----------------------------------


stack = FunctionSet.fixture(
    "stack",
    "recipients",
    (SQLITE,),
    names=("schedule-next", "send-reminder"),
    env={"NEXTUP_WEBHOOK_ALLOW": "127.0.0.1"},
    in_process=True,
)


LEGACY = {
    "email": "ü@example.com",
    "webhook": "http://127.0.0.1:99999/hook",
}


def test_a_stored_task_from_before_the_rules_fails_alone(stack):
    user = f"rf-{uuid.uuid4().hex[:6]}"
    due = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    for name in ("good", *LEGACY):
        data = {
            "user_id": user,
            "task_id": f"{user}.{name}",
            "title": "x",
            "due_at": due,
            "reminder": {"before": "PT10M"},
            "notify": {"email": f"{user}@example.com"},
        }
        headers, body = cloud_event("todo.task.created", data, id_=uuid.uuid4().hex)
        created = stack.caller.post(stack.url("schedule-next"), headers=headers, content=body)
        assert created.status_code == 202, created.text
    # What an older release accepted, written as it would have stored it.
    for channel, value in LEGACY.items():
        task = stack.store.get_task(user, f"{user}.{channel}")
        old = NotifySpec.model_construct(**{"email": None, "webhook": None, channel: value})
        stack.store.save_task(task.model_copy(update={"notify": old}))
        assert getattr(stack.store.get_task(user, f"{user}.{channel}").notify, channel) == value
    headers, body = cloud_event("todo.reminder.due", {"user_id": user}, id_=uuid.uuid4().hex)
    swept = stack.caller.post(stack.url("send-reminder"), headers=headers, content=body)
    assert swept.status_code in (200, 202), swept.text
    assert stack.store.get_reminder(user, f"{user}.good").status is ReminderStatus.SENT
    for channel in LEGACY:
        reminder = stack.store.get_reminder(user, f"{user}.{channel}")
        assert reminder.status is ReminderStatus.FAILED, (channel, reminder)
    assert [d.rcpt_tos for d in stack.mail.received_raw()] == [(f"{user}@example.com",)]


def test_figures():
    """Runs last in this module: the outcomes seen, for docs/RELIABILITY.md."""
    assert OUTCOMES
    record(
        "recipient failures",
        outcomes={f"{c}/{case}": o for (c, case, o) in sorted(OUTCOMES)},
    )
