"""Secrets never appear in logs or error bodies.

Recognisable secrets are configured (the SMTP password, in the environment and inside the
SMTP URL; AWS credentials; OIDC bearer tokens; a token in a webhook URL), then a run with
failures of every kind: a wrong SMTP password, SMTP down, a malformed SMTP URL, the store
away, bad and good tokens, a webhook answering 500. Every log line of every function
process and every answer body (events and readiness probes) is searched for them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from aiosmtpd.smtp import AuthResult
from figures import record

from harness import FunctionProcess, HttpRecorder, cloud_event
from nextup.store import open_store
from nextup_dev.smtp import SmtpServer
from peers import free_port
from reliability.oidc_issuer import AUDIENCE, Issuer

SMTP_PASSWORD = "SMTP-PASSWORD-d41d8cd98f00b204"
URL_PASSWORD = "URL-PASSWORD-9e107d9d372bb682"
AWS_SECRET = "AWS-SECRET-e4d909c290d0fb1ca068"
WEBHOOK_TOKEN = "WEBHOOK-TOKEN-7215ee9c7d9dc229"
SECRETS = [SMTP_PASSWORD, URL_PASSWORD, AWS_SECRET, WEBHOOK_TOKEN]


class AuthMailServer(SmtpServer):
    """An SMTP server that requires AUTH (without TLS, on loopback) with one password."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.received = 0

        def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
            ok = getattr(auth_data, "password", b"") == self.password.encode()
            return AuthResult(success=ok, handled=False)

        super().__init__(authenticator=authenticate, auth_required=True, auth_require_tls=False)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received += 1
        return "250 OK"


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    issuer = Issuer().start()
    issuer.add_key("k1")
    try:
        yield issuer
    finally:
        issuer.stop()


def task(user: str, n: int, **notify: str) -> dict:
    return {
        "user_id": user,
        "task_id": f"{user}.s{n}",
        "title": "Secret-free title",
        "due_at": "2026-11-24T09:00:00Z",
        "reminder": {"before": "PT0M"},
        "notify": notify or {"email": f"{user}@example.com"},
    }


def test_secrets_stay_out_of_logs_and_answers(tmp_path, issuer):
    mail = AuthMailServer(SMTP_PASSWORD).start()
    hook = HttpRecorder(respond=lambda r: (500, {"content-type": "text/plain"}, b"boom")).start()
    db = tmp_path / "state.db"
    open_store(f"sqlite:///{db}").init()
    dead = free_port()  # nothing listens here
    base = {
        "NEXTUP_STORE_URL": f"sqlite:///{db}",
        "NEXTUP_RETRY_BUDGET": "0.5",
        "NEXTUP_BREAKER_RECOVERY": "1",
        "NEXTUP_WEBHOOK_ALLOW": "127.0.0.1",
        "NEXTUP_SMTP_PASSWORD": SMTP_PASSWORD,
        "NEXTUP_OIDC_ISSUER": issuer.url,
        "NEXTUP_OIDC_AUDIENCE": AUDIENCE,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_REGION": "us-east-1",
    }
    variants = {
        # name: (function, extra environment)
        "good": ("send-reminder", {"NEXTUP_SMTP_URL": f"smtp://nextup@127.0.0.1:{mail.port}"}),
        "wrong-password": (
            "send-reminder",
            {
                "NEXTUP_SMTP_URL": f"smtp://nextup@127.0.0.1:{mail.port}",
                "NEXTUP_SMTP_PASSWORD": SMTP_PASSWORD + "-wrong",
            },
        ),
        "password-in-url": (
            "send-reminder",
            {
                "NEXTUP_SMTP_URL": f"smtp://nextup:{URL_PASSWORD}@127.0.0.1:{mail.port}",
                "NEXTUP_SMTP_PASSWORD": "",
            },
        ),
        "smtp-down": ("send-reminder", {"NEXTUP_SMTP_URL": f"smtp://nextup@127.0.0.1:{dead}"}),
        "malformed-url": (
            "send-reminder",
            {"NEXTUP_SMTP_URL": f"smtpx://nextup:{URL_PASSWORD}@127.0.0.1:{mail.port}"},
        ),
        "store-away": (
            "schedule-next",
            {
                "NEXTUP_STORE_URL": "dynamodb://nextup-secrets",
                "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{dead}",
            },
        ),
    }
    processes: dict[str, FunctionProcess] = {}
    bodies: list[str] = []
    tokens: list[str] = []
    statuses: dict[str, list[int]] = {}
    try:
        for name, (function, extra) in variants.items():
            processes[name] = FunctionProcess(function, {**base, **extra}).start()
        scheduler = FunctionProcess("schedule-next", {**base}).start()
        processes["scheduler"] = scheduler

        def post(name: str, type_: str, data: dict, token: str | None) -> httpx.Response:
            headers, body = cloud_event(type_, data, id_=uuid.uuid4().hex)
            if token is not None:
                headers["authorization"] = token
            response = httpx.post(processes[name].url, headers=headers, content=body, timeout=30)
            bodies.append(response.text)
            statuses.setdefault(name, []).append(response.status_code)
            return response

        def bearer(**claims) -> str:
            token = issuer.token(**claims)
            tokens.append(token)
            return f"Bearer {token}"

        user = f"sec-{uuid.uuid4().hex[:6]}"
        for n in range(3):
            assert (
                post("scheduler", "todo.task.created", task(user, n), bearer()).status_code == 202
            )
        webhook = f"{hook.url}/hooks/{WEBHOOK_TOKEN}?token={WEBHOOK_TOKEN}"
        data = task(user, 9, webhook=webhook)
        assert post("scheduler", "todo.task.created", data, bearer()).status_code == 202
        # Refused tokens, on every process.
        for name in processes:
            post(name, "todo.reminder.due", {}, bearer(exp=1))
            post(name, "todo.reminder.due", {}, bearer(aud="someone-else"))
            post(name, "todo.reminder.due", {}, "Bearer " + tokens[-1][:-5] + "AAAAA")
        # Sweeps with every kind of SMTP failure, and the webhook failing.
        for name, (function, _) in variants.items():
            for n in range(2):
                if function == "schedule-next":
                    post(name, "todo.task.created", task(user, 20 + n), bearer())
                else:
                    post(name, "todo.reminder.due", {"user_id": user}, bearer())
            for path in ("/health/readiness", "/_/ready"):
                bodies.append(httpx.get(processes[name].url + path, timeout=30).text)
        assert 503 in statuses["smtp-down"]
        assert statuses["good"][-2] in (200, 202) and mail.received >= 1
        assert any(s >= 500 for s in statuses["store-away"])
    finally:
        for process in processes.values():
            process.stop()
        mail.stop()
        hook.stop()

    logs = {name: p.log_path.read_text(errors="replace") for name, p in processes.items()}
    searched = SECRETS + [t.split(".")[2] for t in tokens] + [t.split(".")[1] for t in tokens]
    leaks = [
        f"{where}: {secret[:12]}..."
        for secret in searched
        for where, text in [*logs.items(), *(("answer", b) for b in bodies)]
        if secret[:24] in text
    ]
    assert leaks == [], "\n".join(sorted(set(leaks)))
    record(
        "secrets",
        processes=len(processes),
        log_lines=sum(text.count("\n") for text in logs.values()),
        answers=len(bodies),
        secrets_searched=len(searched),
        statuses=statuses,
        leaks=0,
    )
