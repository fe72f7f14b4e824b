"""Webhook targets come from event data, so an event must not make a function probe the
cluster: loopback, link-local (cloud metadata), private, shared, multicast and reserved
addresses are refused unless `NEXTUP_WEBHOOK_ALLOW` names them, however they are spelled
(IPv4-mapped, IPv4-compatible, NAT64, 6to4 and Teredo IPv6, host names that resolve to
them), and a redirect from an allowed target is not followed. Ambiguous spellings (short,
decimal, hex IPv4; IDNA tricks; zone ids; credentials; bad ports) are refused when the task
is created, with a 400 naming `notify.webhook`.

The host is resolved once and the request goes to the address that was checked (tested
in-process with a resolver the test controls, so a second, rebinding answer would show):
the URL carries the IP literal, `Host` the original name, and for https the TLS server
name and certificate check are the original name's.

Nothing here may reach a real network: send-reminder runs with HTTP_PROXY/HTTPS_PROXY
pointing at a canary proxy on loopback, so any request that got past the guard lands
there, recorded, instead of leaving the machine. Host names used are only those in
/etc/hosts (no DNS queries), or answered by the test's own resolver.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from figures import record
from relstack import FunctionSet

from harness import HttpRecorder, Recorded, TestCA, cloud_event
from nextup import webhooks
from nextup.notify import Message, PermanentFailure, RecipientUnavailable
from nextup.reminders import ReminderStatus


class Canary(HttpRecorder):
    """An HTTP proxy that forwards nothing: it records every request and answers itself."""

    def __init__(self) -> None:
        super().__init__(respond=self.answer)

    @staticmethod
    def answer(request: Recorded) -> tuple[int, dict[str, str], bytes]:
        if "redirect" in request.path:
            return 302, {"location": "http://169.254.169.254/latest/meta-data/"}, b""
        return 200, {}, b""

    @property
    def calls(self) -> list[tuple[str, str]]:
        """(method, target) of every request that reached it."""
        return [(r.method, r.path) for r in self.requests]


REFUSED = [
    "http://127.0.0.1/hook",
    "http://[::1]/hook",
    "http://[0:0:0:0:0:0:0:1]/hook",
    "http://[::]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://[::127.0.0.1]/hook",  # IPv4-compatible
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 of loopback
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of the metadata address
    "http://[2002:7f00:1::]/hook",  # 6to4 of loopback
    "http://[2002:a9fe:a9fe::]/hook",  # 6to4 of the metadata address
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",  # Teredo, client 127.0.0.1
    "http://[2001:0:a00:1:8000:63bf:f7f7:f7f7]/hook",  # Teredo, server 10.0.0.1
    "http://0.0.0.0/hook",
    "http://vm/hook",  # /etc/hosts: 127.0.0.1
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",  # AWS's IPv6 metadata address
    "http://[fe80::1]/hook",
    "http://10.0.0.1/hook",
    "https://10.0.0.1/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",
    "http://[fc00::1]/hook",
    "http://224.0.0.1/hook",
    "http://[ff0e::1]/hook",
    "http://240.0.0.1/hook",
    "http://255.255.255.255/hook",
    "http://198.18.0.1/hook",
]
# Spellings that parsers and resolvers read differently, and URLs a sender could not use:
# refused when the task is created.
REFUSED_AT_CREATION = [
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://0177.0.0.1/hook",
    "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/hook",  # IDNA 2003 maps it to localhost; IDNA 2008 refuses it
    "http://①.1.1.1/hook",
    "http://1.1.1.1\\@127.0.0.1/hook",
    "http://1.1.1.1%2f@127.0.0.1/hook",
    "http://user:secret@127.0.0.2/hook",
    "http://[fe80::1%25eth0]/hook",
    "http://[::1/hook",
    "http://a..b/hook",
    "http://localhost./hook",
    "http://127.0.0.2:99999/hook",
    "http://127.0.0.2:abc/hook",
    "http://127.0.0.2:+80/hook",
    "http://127.0.0.2:0/hook",
    "http://" + "l" * 64 + ".example/hook",
]
ALLOWED = [
    "http://127.0.0.2/hook",  # allow-listed address
    "http://10.1.2.3/hook",  # inside an allow-listed block
    "http://localhost/hook",  # allow-listed host name
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    canary = Canary().start()
    try:
        with FunctionSet.running(
            "sqlite",
            tmp_path_factory.mktemp("webhooks"),
            names=("schedule-next", "send-reminder"),
            env={"NEXTUP_WEBHOOK_ALLOW": "127.0.0.2,10.1.2.0/24,localhost"},
            per_function={
                "send-reminder": {
                    "HTTP_PROXY": canary.url,
                    "HTTPS_PROXY": canary.url,
                    "ALL_PROXY": canary.url,
                    "NO_PROXY": "",
                    "K_SINK": "",
                }
            },
        ) as fs:
            fs.canary = canary
            yield fs
    finally:
        canary.stop()


def remind(fs: FunctionSet, user: str, target: str) -> tuple[ReminderStatus, str | None, int]:
    task = f"{user}.w{uuid.uuid4().hex[:6]}"
    data = {
        "user_id": user,
        "task_id": task,
        "title": "x",
        "due_at": "2026-11-24T09:00:00Z",
        "reminder": {"before": "PT0M"},
        "notify": {"webhook": target},
    }
    created = httpx.post(
        fs.functions["schedule-next"].url,
        headers=cloud_event("todo.task.created", data, id_=uuid.uuid4().hex)[0],
        content=cloud_event("todo.task.created", data, id_="x")[1],
        timeout=30,
    )
    assert created.status_code == 202, created.text
    headers, body = cloud_event(
        "todo.reminder.due", {"user_id": user, "task_id": task}, id_=uuid.uuid4().hex
    )
    swept = httpx.post(fs.functions["send-reminder"].url, headers=headers, content=body, timeout=30)
    assert swept.status_code < 500, swept.text
    reminder = fs.store.get_reminder(user, task)
    return reminder.status, reminder.error, swept.status_code


def test_non_public_targets_are_refused_and_never_contacted(stack):
    user = f"wh-{uuid.uuid4().hex[:6]}"
    outcomes = {}
    for target in REFUSED:
        before = len(stack.canary.calls)
        status, error, _ = remind(stack, user, target)
        outcomes[target] = status.value
        assert status is ReminderStatus.FAILED, (target, status, error)
        assert "non-public" in (error or ""), (target, error)
        assert len(stack.canary.calls) == before, (target, stack.canary.calls[before:])
    record("webhook guard", refused=len(REFUSED), contacted=0)


def test_ambiguous_or_unusable_urls_are_refused_when_the_task_is_created(stack):
    user = f"wh-{uuid.uuid4().hex[:6]}"
    before, contacted = stack.dump(), len(stack.canary.calls)
    for target in REFUSED_AT_CREATION:
        data = {"user_id": user, "task_id": f"{user}.x", "notify": {"webhook": target}}
        headers, body = cloud_event("todo.task.created", data, id_=uuid.uuid4().hex)
        response = httpx.post(
            stack.functions["schedule-next"].url, headers=headers, content=body, timeout=30
        )
        assert response.status_code == 400, (target, response.text)
        assert response.json()["field"] == "data.notify.webhook", target
        assert "secret" not in response.text, "credentials are never echoed"
    assert stack.dump() == before
    assert len(stack.canary.calls) == contacted
    record("webhook creation", refused=len(REFUSED_AT_CREATION))


def test_allow_listed_targets_are_posted_to_once(stack):
    user = f"wh-{uuid.uuid4().hex[:6]}"
    for target in ALLOWED:
        before = len(stack.canary.calls)
        status, error, _ = remind(stack, user, target)
        assert status is ReminderStatus.SENT, (target, error)
        reached = stack.canary.calls[before:]
        assert len(reached) == 1 and reached[0][0] == "POST", reached
        assert reached[0][1].startswith(target.split("/hook")[0]), reached


def test_a_redirect_is_not_followed(stack):
    user = f"wh-{uuid.uuid4().hex[:6]}"
    before = len(stack.canary.calls)
    status, error, _ = remind(stack, user, "http://127.0.0.2/redirect")
    reached = stack.canary.calls[before:]
    assert reached == [("POST", "http://127.0.0.2/redirect")], reached
    assert status is ReminderStatus.FAILED and "302" in (error or "")


# -- the request goes to the address that was checked -----------------------------------------


class Resolver:
    """The test's DNS: the first answer is the one the guard checks; any later question
    gets the rebinding answer. Counts the questions."""

    def __init__(self, first: list[str], later: list[str]) -> None:
        self.first, self.later = first, later
        self.questions: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.questions.append((host, port))
        return self.first if len(self.questions) == 1 else self.later


@pytest.fixture
def direct(monkeypatch) -> None:
    """No proxy: these requests go straight to the test's own servers on loopback."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def twin_servers(direct) -> Iterator[tuple[HttpRecorder, HttpRecorder]]:
    """Two servers on the same port: the checked address (127.0.0.1), and the one a
    rebinding DNS answer would lead to (127.0.0.3)."""
    checked = HttpRecorder().start()
    rebound = HttpRecorder(host="127.0.0.3", port=checked.port).start()
    yield checked, rebound
    checked.stop()
    rebound.stop()


def reminder() -> Message:
    return Message("u", "t", "x", None, "2026-11-24T09:00:00+00:00", "<m@nextup.example>")


def send(url: str, resolver: Resolver, **kwargs: Any) -> None:
    policy = webhooks.WebhookPolicy(allow=("hooks.test",), resolve=resolver)
    asyncio.run(webhooks.post(url, reminder(), policy=policy, timeout=5, **kwargs))


def test_the_request_goes_to_the_address_that_was_checked(twin_servers):
    checked, rebound = twin_servers
    resolver = Resolver(first=["127.0.0.1"], later=["127.0.0.3"])
    send(f"http://hooks.test:{checked.port}/hook?x=1", resolver)
    assert resolver.questions == [("hooks.test", checked.port)], "resolved once"
    [request] = checked.requests
    assert (request.method, request.path) == ("POST", "/hook?x=1")
    assert request.headers["host"] == f"hooks.test:{checked.port}"
    assert request.headers["idempotency-key"] == "<m@nextup.example>"
    assert request.json()["task_id"] == "t"
    assert rebound.requests == []


def test_a_rebinding_answer_to_a_private_address_is_never_used(twin_servers):
    """A name not on the allow-list that first resolves to a public address: refused
    outright when any address is private, and never resolved a second time."""
    checked, rebound = twin_servers
    resolver = Resolver(first=["93.184.216.34", "127.0.0.3"], later=["127.0.0.3"])
    policy = webhooks.WebhookPolicy(resolve=resolver)
    with pytest.raises(PermanentFailure, match="non-public"):
        asyncio.run(webhooks.post(f"http://public.test:{checked.port}/", reminder(), policy=policy))
    assert len(resolver.questions) == 1 and rebound.requests == [] == checked.requests


def test_the_next_checked_address_is_tried_when_one_refuses(twin_servers):
    checked, rebound = twin_servers
    resolver = Resolver(first=["127.0.0.4", "127.0.0.1"], later=["127.0.0.3"])
    send(f"http://hooks.test:{checked.port}/hook", resolver)
    assert len(resolver.questions) == 1
    assert len(checked.requests) == 1 and rebound.requests == []


def test_https_is_pinned_and_the_certificate_checked_for_the_name(direct):
    ca = TestCA()
    good = HttpRecorder(tls=ca.server_context("hooks.test")).start()
    wrong = HttpRecorder(tls=ca.server_context("other.test")).start()
    try:
        resolver = Resolver(first=["127.0.0.1"], later=["127.0.0.3"])
        send(f"https://hooks.test:{good.port}/hook", resolver, verify=ca.client_context())
        assert good.server_names == ["hooks.test"], "SNI is the name, not the address"
        [request] = good.requests
        assert request.headers["host"] == f"hooks.test:{good.port}"
        assert len(resolver.questions) == 1
        # A certificate for another name fails the check against hooks.test.
        with pytest.raises(RecipientUnavailable):
            send(
                f"https://hooks.test:{wrong.port}/hook",
                Resolver(first=["127.0.0.1"], later=[]),
                verify=ca.client_context(),
            )
        assert wrong.requests == []
    finally:
        good.stop()
        wrong.stop()
