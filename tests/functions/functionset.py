"""A real function set: the four functions as functions-framework processes (or, with
`in_process`, served by functions-framework in the test's process), a real SMTP server,
a recording HTTP server standing in for the todo app's backend, webhooks and the sink,
and the store (SQLite file or DynamoDB on moto server).
"""

from __future__ import annotations

import httpx
import pytest

from harness import FunctionGroup, HttpRecorder, MailServer, Recorded
from nextup.functions import ALL
from nextup_dev.moto import aws_env
from nextup_dev.stores import SQLITE, store_url

FUNCTIONS = tuple(ALL)  # every declared function


def backend_answer(request: Recorded) -> tuple[int, dict[str, str], bytes]:
    """The todo app's API as the seed's services saw it: users have addresses."""
    if request.method == "GET" and request.path.startswith("/api/users/"):
        user = request.path.rsplit("/", 1)[-1]
        if user.startswith("ghost"):
            return 404, {"content-type": "application/json"}, b'{"detail": "no such user"}'
        return (
            200,
            {"content-type": "application/json"},
            f'{{"email": "{user}@users.example"}}'.encode(),
        )
    return 201, {"content-type": "application/json"}, b"{}"


class Stack(FunctionGroup):
    def post(self, name: str, headers: dict, body: bytes, path: str = "/") -> httpx.Response:
        return self.caller.post(self.url(name) + path, headers=headers, content=body)

    def get(self, name: str, path: str = "/", **options) -> httpx.Response:
        return self.caller.get(self.url(name) + path, **options)


def store_env(
    kind: str, tmp_path_factory: pytest.TempPathFactory, moto: str | None
) -> tuple[str, dict[str, str]]:
    """A fresh store of `kind` and what a process needs to reach it."""
    url = store_url(kind, tmp_path_factory.mktemp("state"))
    return url, ({} if kind == SQLITE else aws_env(moto or ""))


def start_stack(
    kind: str,
    tmp_path_factory: pytest.TempPathFactory,
    moto: str | None,
    mp: pytest.MonkeyPatch,
    *,
    sink: bool = False,
    names: tuple[str, ...] = FUNCTIONS,
    extra_env: dict[str, str] | None = None,
    in_process: bool = False,
) -> Stack:
    store_url, aws = store_env(kind, tmp_path_factory, moto)
    mail = MailServer().start()
    web = HttpRecorder(respond=backend_answer).start()
    env = {
        "NEXTUP_STORE_URL": store_url,
        "NEXTUP_SMTP_URL": mail.url,
        "NEXTUP_BACKEND_URL": web.url,
        "NEXTUP_WEBHOOK_ALLOW": "127.0.0.1",
        "NEXTUP_RETRY_BUDGET": "2",
        "NEXTUP_BREAKER_RECOVERY": "1",
        **aws,
        **(extra_env or {}),
    }
    if sink:
        env["K_SINK"] = f"{web.url}/sink"
    stack = Stack(store_url, env, mail, web, in_process=in_process)
    for name, value in aws.items():
        mp.setenv(name, value)  # the test process reads the same store as the functions
    stack.launch(names, lambda name: env)
    return stack
