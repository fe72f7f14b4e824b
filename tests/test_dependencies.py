"""The table of dependencies (`nextup.dependencies`): each one's policy and breaker, an
override of one changing that one alone (against real failing HTTP peers), the one
classification of what is transient, the per-event deadline every retry stops at, and
Knative's retried statuses kept in one place.
"""

from __future__ import annotations

import asyncio
import importlib
import smtplib
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness import HttpRecorder
from nextup import dependencies, resilience
from nextup.config import Settings
from nextup.dependencies import BACKEND, DAPR, OIDC, SINK, SMTP, STORE, WEBHOOKS
from nextup.emit import SinkRejected
from nextup.envelope import CloudEvent
from nextup.errors import (
    KNATIVE_RETRIED,
    BadRequest,
    NotFound,
    Unavailable,
    retried_by_broker,
)
from nextup.notify import PermanentFailure, RecipientUnavailable, classify_smtp
from nextup.resilience import CircuitBreaker, DeadlineExceeded, RetryPolicy, Verdict, call
from nextup.services import Services
from nextup.store.errors import CommitConflict, StoreError, StoreNotReady, StoreUnavailable

T, P, N = Verdict.TRANSIENT, Verdict.PERMANENT, Verdict.INCONCLUSIVE
OVERRIDE_ENV = ("NEXTUP_RETRY_", "NEXTUP_BREAKER_", "NEXTUP_OVERRIDES", "NEXTUP_EVENT_DEADLINE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings under test come from this test alone, not the shell that runs it."""
    import os

    for name in list(os.environ):
        if name.upper().startswith(OVERRIDE_ENV):
            monkeypatch.delenv(name)


# -- the table and what the settings make of it -------------------------------------------


def test_every_dependency_is_declared_once_with_the_behaviour_it_had():
    assert dependencies.NAMES == ("store", "smtp", "webhooks", "sink", "dapr", "backend", "oidc")
    settings = Settings()
    for name in ("store", "smtp", "sink", "dapr", "backend"):
        resolved = dependencies.resolve(name, settings)
        # What every dependency had before the table: one policy, one breaker setting.
        assert resolved.policy == RetryPolicy(
            budget=8.0, base_delay=0.05, max_delay=2.0, max_attempts=6
        )
        assert (resolved.failures, resolved.recovery) == (5, 15.0)
    webhooks = dependencies.resolve("webhooks", settings)
    assert webhooks.failures is None and webhooks.new_breaker() is None
    assert webhooks.policy.max_attempts == 1
    assert dependencies.resolve("oidc", settings).policy.max_attempts == 1
    # What the health function reports, and with which probe.
    assert {d.name: d.probe for d in dependencies.DEPENDENCIES.values()} == {
        "store": "check_store",
        "smtp": "check_smtp",
        "webhooks": None,
        "sink": "check_sink",
        "dapr": "check_dapr",
        "backend": "check_backend",
        "oidc": None,
    }


def test_the_shared_settings_keep_their_names_and_apply_to_every_dependency(monkeypatch):
    monkeypatch.setenv("NEXTUP_RETRY_BUDGET", "3")
    monkeypatch.setenv("NEXTUP_BREAKER_FAILURES", "7")
    monkeypatch.setenv("NEXTUP_BREAKER_RECOVERY", "2.5")
    settings = Settings()
    assert settings.overrides == {}
    for name in ("store", "smtp", "sink", "dapr", "backend"):
        resolved = dependencies.resolve(name, settings)
        assert resolved.policy.budget == 3.0
        assert (resolved.failures, resolved.recovery) == (7, 2.5)


def test_an_override_from_the_environment_changes_that_dependency_alone(monkeypatch):
    monkeypatch.setenv("NEXTUP_RETRY_BUDGET", "3")
    monkeypatch.setenv("NEXTUP_RETRY_SMTP_ATTEMPTS", "2")
    monkeypatch.setenv("nextup_retry_smtp_max_delay", "0.5")  # names are case-insensitive
    monkeypatch.setenv("NEXTUP_RETRY_STORE_BUDGET", "1.5")
    monkeypatch.setenv("NEXTUP_RETRY_STORE_DELAY", "0.01")
    monkeypatch.setenv("NEXTUP_BREAKER_SINK_FAILURES", "2")
    monkeypatch.setenv("NEXTUP_BREAKER_SINK_RECOVERY", "4")
    settings = Settings()
    smtp = dependencies.resolve("smtp", settings)
    assert smtp.policy == RetryPolicy(budget=3.0, base_delay=0.05, max_delay=0.5, max_attempts=2)
    store = dependencies.resolve("store", settings)
    assert store.policy == RetryPolicy(budget=1.5, base_delay=0.01, max_delay=2.0, max_attempts=6)
    sink = dependencies.resolve("sink", settings)
    assert (sink.failures, sink.recovery) == (2, 4.0)
    assert sink.policy.max_attempts == 6
    for name in ("dapr", "backend"):
        other = dependencies.resolve(name, settings)
        assert other.policy == RetryPolicy(budget=3.0, max_delay=2.0, max_attempts=6)
        assert (other.failures, other.recovery) == (5, 15.0)
    # The same as JSON, or as a constructor argument.
    monkeypatch.setenv("NEXTUP_OVERRIDES", '{"backend": {"attempts": 4}}')
    assert dependencies.resolve("backend", Settings()).policy.max_attempts == 4
    given = Settings(overrides={"dapr": {"attempts": 3}})
    assert dependencies.resolve("dapr", given).policy.max_attempts == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NEXTUP_RETRY_SMPT_ATTEMPTS", "2"),  # no such dependency
        ("NEXTUP_RETRY_SMTP_TRIES", "2"),  # no such knob
        ("NEXTUP_BREAKER_SMTP_ATTEMPTS", "2"),  # a retry knob under BREAKER
        ("NEXTUP_RETRY_SMTP_ATTEMPTS", "0"),  # out of bounds
        ("NEXTUP_OVERRIDES", '{"mail": {"attempts": 2}}'),
        ("NEXTUP_EVENT_DEADLINE", "30"),  # not below a Trigger's timeout
    ],
)
def test_a_mistyped_override_is_refused_not_ignored(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises((ValidationError, ValueError)):
        Settings()


# -- one classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dependency", "status", "transient"),
    [
        (SINK, 503, True),
        (SINK, 500, True),
        (SINK, 404, True),  # an ingress still starting
        (SINK, 409, True),
        (SINK, 425, True),
        (SINK, 429, True),
        (SINK, 400, False),  # it refused what we built: a bug of ours
        (SINK, 202, False),
        (BACKEND, 502, True),
        (BACKEND, 408, True),
        (BACKEND, 429, True),
        (BACKEND, 404, False),  # an unknown user
        (BACKEND, 409, False),  # it has the task already
        (DAPR, 400, True),  # a component it does not have yet
        (DAPR, 404, True),
        (DAPR, 500, True),
        (DAPR, 204, False),
        (WEBHOOKS, 500, True),
        (WEBHOOKS, 408, True),
        (WEBHOOKS, 425, True),
        (WEBHOOKS, 429, True),
        (WEBHOOKS, 404, False),
        (WEBHOOKS, 410, False),
        (OIDC, 503, True),
        (OIDC, 429, True),
        (OIDC, 404, False),
        (SMTP, 421, True),  # the server closing, for everyone
        (SMTP, 530, True),  # not logged in, for everyone
        (SMTP, 450, False),  # one mailbox, for now: the recipient's, not the server's
        (SMTP, 550, False),
        (STORE, 500, True),
        (STORE, 400, False),
    ],
)
def test_reply_codes(dependency, status, transient):
    assert dependency.transient_status(status) is transient


@pytest.mark.parametrize(
    ("dependency", "error", "verdict"),
    [
        (STORE, StoreUnavailable("throttled"), T),
        (STORE, StoreNotReady("no table"), P),  # a person has to act: not retried
        (STORE, CommitConflict((0,)), P),
        (STORE, StoreError("denied"), P),
        (STORE, KeyError("bug"), N),
        (SMTP, Unavailable("refused", field="smtp"), T),
        (SMTP, RecipientUnavailable("450"), N),  # the server answered: it is up
        (SMTP, PermanentFailure("550"), N),
        (SMTP, BadRequest("no"), P),
        (SINK, Unavailable("503", field="sink"), T),
        (SINK, SinkRejected("400"), N),
        (BACKEND, Unavailable("502", field="backend"), T),
        (BACKEND, NotFound("unknown user"), P),
        (BACKEND, RuntimeError("refused the task"), N),
        (DAPR, Unavailable("down", field="dapr"), T),
        (OIDC, Unavailable("down", field="oidc"), T),
        # A webhook is a server of its own: nothing it does is the dependency's.
        (WEBHOOKS, RecipientUnavailable("503"), N),
        (WEBHOOKS, PermanentFailure("404"), N),
        (WEBHOOKS, Unavailable("the event's deadline", field="webhooks"), P),
    ],
)
def test_exceptions(dependency, error, verdict):
    assert dependency.verdict(error) is verdict


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (smtplib.SMTPRecipientsRefused({"a@example.com": (421, b"closing")}), Unavailable),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (530, b"auth")}), Unavailable),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (450, b"busy")}), RecipientUnavailable),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"gone")}), PermanentFailure),
        (smtplib.SMTPDataError(421, b"closing"), Unavailable),
        (smtplib.SMTPDataError(451, b"greylisted"), RecipientUnavailable),
        (smtplib.SMTPServerDisconnected("gone"), Unavailable),
    ],
)
def test_the_smtp_adapter_reads_the_server_codes_from_the_table(error, outcome):
    assert type(classify_smtp(error, "a@example.com")) is outcome


def test_knative_retried_statuses_are_one_constant_everywhere(monkeypatch):
    from nextup_dev import delivery

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "reliability"))
    minibroker = importlib.import_module("minibroker")
    assert {404, 408, 409, 429} == KNATIVE_RETRIED
    assert delivery.RETRIED_STATUS is KNATIVE_RETRIED
    assert minibroker.RETRIED is KNATIVE_RETRIED
    for status in [None, *range(100, 600)]:
        expected = status is None or status >= 500 or status in {404, 408, 409, 429}
        assert retried_by_broker(status) is expected
        assert delivery.retryable(status) is expected
        assert minibroker.retryable(status) is expected


# -- an override over real failing peers ---------------------------------------------------


def _event() -> CloudEvent:
    return CloudEvent(
        {"specversion": "1.0", "id": "e1", "source": "/tests", "type": "todo.test"}, {"n": 1}
    )


def test_overriding_one_dependencys_attempts_changes_that_dependency_only(monkeypatch):
    """The sink and the todo app's API both answer 503 for ever: the sink is tried the
    number of times its override says, the backend as often as the table says, and the
    sink's breaker override opens it alone."""
    failing = lambda _: (503, {"content-type": "application/json"}, b"{}")  # noqa: E731
    sink = HttpRecorder(respond=failing).start()
    backend = HttpRecorder(respond=failing).start()
    monkeypatch.setenv("K_SINK", f"{sink.url}/sink")
    monkeypatch.setenv("NEXTUP_BACKEND_URL", backend.url)
    monkeypatch.setenv("NEXTUP_RETRY_BUDGET", "10")
    monkeypatch.setenv("NEXTUP_RETRY_DELAY", "0.01")  # not a knob: ignored like any unknown
    monkeypatch.setenv("NEXTUP_RETRY_SINK_ATTEMPTS", "2")
    monkeypatch.setenv("NEXTUP_RETRY_SINK_DELAY", "0.001")
    monkeypatch.setenv("NEXTUP_RETRY_BACKEND_DELAY", "0.001")
    monkeypatch.setenv("NEXTUP_RETRY_BACKEND_MAX_DELAY", "0.01")
    monkeypatch.setenv("NEXTUP_BREAKER_FAILURES", "100")
    monkeypatch.setenv("NEXTUP_BREAKER_SINK_FAILURES", "2")
    services = Services(Settings(), "schedule-next")

    async def scenario() -> tuple[BaseException, BaseException, BaseException]:
        try:
            with pytest.raises(Unavailable) as sink_down:
                await services.emit(_event())
            with pytest.raises(Unavailable) as backend_down:
                await services.backend_user_email("u1")
            with pytest.raises(Unavailable) as sink_open:
                await services.emit(_event())
            return sink_down.value, backend_down.value, sink_open.value
        finally:
            await services.close()

    try:
        sink_down, backend_down, sink_open = asyncio.run(scenario())
        assert len(sink.requests) == 2, "the sink's own attempts"
        assert len(backend.requests) == 6, "the backend keeps the table's"
        assert sink_down.field == "sink" and backend_down.field == "backend"
        assert "circuit open" in sink_open.error, "the sink's breaker: opened after 2"
        assert len(sink.requests) == 2, "an open breaker does not call"
        assert services.breaker("sink").state.value == "open"
        assert services.breaker("backend").state.value == "closed"
        assert services.breaker("backend").failures == 6
    finally:
        sink.stop()
        backend.stop()


# -- the deadline of an event -----------------------------------------------------------


def test_every_retry_stops_at_the_events_deadline():
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    slow = RetryPolicy(budget=60, base_delay=0.05, max_delay=0.05, max_attempts=10_000)

    async def within(seconds: float) -> float:
        with resilience.deadline_in(seconds):
            started = time.monotonic()
            with pytest.raises(Unavailable) as caught:
                await call(
                    down,
                    breaker=CircuitBreaker("x", failure_threshold=10**6),
                    policy=slow,
                    transient=(ConnectionError,),
                )
            elapsed = time.monotonic() - started
        assert caught.value.status == 503 and caught.value.retry_after >= 1
        return elapsed

    elapsed = asyncio.run(within(0.3))
    # Well past 0.3 s is still far from 60: a loaded machine's scheduling, not the budget.
    assert elapsed < 0.3 + 3.0, "stopped at the deadline, not the 60 s budget"
    assert calls > 1, "retried until then"
    assert resilience.deadline() is None, "the deadline ends with its block"


def test_an_attempt_is_cut_at_the_deadline_and_none_starts_after_it():
    async def hang() -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        with resilience.deadline_in(0.2):
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await call(hang, breaker=None, policy=RetryPolicy(budget=60), transient=())
            assert time.monotonic() - started < 0.2 + 3.0  # not the 60 s budget
            # Past it: refused at once, the dependency never called.
            with pytest.raises(DeadlineExceeded) as caught:
                await call(hang, breaker=None, policy=RetryPolicy(), name="sink")
            assert caught.value.field == "sink" and caught.value.status == 503
        # A nested deadline never extends the outer one.
        with resilience.deadline_in(0.1), resilience.deadline_at(time.monotonic() + 60) as until:
            assert until < time.monotonic() + 0.2

    asyncio.run(scenario())


def test_tasks_started_in_a_delivery_inherit_its_deadline():
    async def read() -> float | None:
        return resilience.deadline()

    async def scenario() -> tuple[float | None, float | None]:
        with resilience.deadline_in(5) as until:
            return until, await asyncio.create_task(read())

    until, inherited = asyncio.run(scenario())
    assert until is not None and inherited == until
