"""Webhook targets come from event data, so an event must not make a function probe the
cluster: loopback, link-local (cloud metadata), private, shared, multicast and reserved
addresses are refused unless `NEXTUP_WEBHOOK_ALLOW` names them, however they are spelled
(IPv4-mapped IPv6, host names that resolve to them), and a redirect from an allowed target
is not followed. Ambiguous spellings (short, decimal, hex IPv4; IDNA tricks; zone ids;
credentials; bad ports) are refused when the task is created, with a 400 naming
`notify.webhook`.

Nothing here may reach a real network: send-reminder runs with HTTP_PROXY/HTTPS_PROXY
pointing at a canary proxy on loopback, so any request that got past the guard lands
there, recorded, instead of leaving the machine. Host names used are only those in
/etc/hosts (no DNS queries).
"""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from figures import record
from relstack import FunctionSet

from harness import cloud_event
from nextup.reminders import ReminderStatus


class Canary:
    """An HTTP proxy that forwards nothing: it records every request and answers itself."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def start(self) -> Canary:
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                canary.requests.append((self.command, self.path))
                if "redirect" in self.path:
                    self.send_response(302)
                    self.send_header("location", "http://169.254.169.254/latest/meta-data/")
                else:
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST = do_CONNECT = do_PUT = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


REFUSED = [
    "http://127.0.0.1/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://vm/hook",  # /etc/hosts: 127.0.0.1
    "http://169.254.169.254/latest/meta-data/",
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
    with pytest.MonkeyPatch.context() as mp:
        fs = FunctionSet.start(
            "sqlite",
            tmp_path_factory.mktemp("webhooks"),
            mp,
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
        )
        fs.canary = canary
        try:
            yield fs
        finally:
            fs.stop()
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
        before = len(stack.canary.requests)
        status, error, _ = remind(stack, user, target)
        outcomes[target] = status.value
        assert status is ReminderStatus.FAILED, (target, status, error)
        assert "non-public" in (error or ""), (target, error)
        assert len(stack.canary.requests) == before, (target, stack.canary.requests[before:])
    record("webhook guard", refused=len(REFUSED), contacted=0)


def test_ambiguous_or_unusable_urls_are_refused_when_the_task_is_created(stack):
    user = f"wh-{uuid.uuid4().hex[:6]}"
    before, contacted = stack.dump(), len(stack.canary.requests)
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
    assert len(stack.canary.requests) == contacted
    record("webhook creation", refused=len(REFUSED_AT_CREATION))


def test_allow_listed_targets_are_posted_to_once(stack):
    user = f"wh-{uuid.uuid4().hex[:6]}"
    for target in ALLOWED:
        before = len(stack.canary.requests)
        status, error, _ = remind(stack, user, target)
        assert status is ReminderStatus.SENT, (target, error)
        reached = stack.canary.requests[before:]
        assert len(reached) == 1 and reached[0][0] == "POST", reached
        assert reached[0][1].startswith(target.split("/hook")[0]), reached


def test_a_redirect_is_not_followed(stack):
    user = f"wh-{uuid.uuid4().hex[:6]}"
    before = len(stack.canary.requests)
    status, error, _ = remind(stack, user, "http://127.0.0.2/redirect")
    reached = stack.canary.requests[before:]
    assert reached == [("POST", "http://127.0.0.2/redirect")], reached
    assert status is ReminderStatus.FAILED and "302" in (error or "")
