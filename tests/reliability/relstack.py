"""The function set for the reliability tests: real functions-framework processes over a
real store (SQLite file or DynamoDB on moto server), a real SMTP server and a recording
HTTP sink, each optionally behind a fault proxy.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest
from storedump import dump

from harness import AWS_TEST_ENV, FunctionGroup, HttpRecorder, MailServer


def store_url_for(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'state.db'}"
    return f"dynamodb://rel-{uuid.uuid4().hex[:10]}"


class FunctionSet(FunctionGroup):
    """The group with the HTTP recorder as the sink of send-reminder's events."""

    @property
    def sink(self) -> HttpRecorder:
        return self.web

    @classmethod
    def start(
        cls,
        kind: str,
        tmp: Path,
        mp: pytest.MonkeyPatch,
        *,
        moto: str | None = None,
        names: tuple[str, ...] = ("complete-task", "schedule-next", "send-reminder"),
        env: dict[str, str] | None = None,
        per_function: dict[str, dict[str, str]] | None = None,
        store_endpoint: str | None = None,
        smtp_url: str | None = None,
        sink_url: str | None = None,
        mail: MailServer | None = None,
        sink: HttpRecorder | None = None,
    ) -> FunctionSet:
        """Start it; `store_endpoint`, `smtp_url` and `sink_url` put a proxy in between."""
        store_url = store_url_for(kind, tmp)
        mail = mail or MailServer().start()
        sink = sink or HttpRecorder().start()
        base = {
            "NEXTUP_STORE_URL": store_url,
            "NEXTUP_SMTP_URL": smtp_url or mail.url,
            "NEXTUP_RETRY_BUDGET": "2",
            "NEXTUP_BREAKER_RECOVERY": "1",
            "NEXTUP_REMINDER_LEASE": "PT5S",
            **(env or {}),
        }
        if kind == "dynamodb":
            assert moto, "a moto server endpoint is needed for DynamoDB"
            for name, value in {**AWS_TEST_ENV, "AWS_ENDPOINT_URL_DYNAMODB": moto}.items():
                mp.setenv(name, value)  # the test process reads the real endpoint
            base.update(AWS_TEST_ENV, AWS_ENDPOINT_URL_DYNAMODB=store_endpoint or moto)

        def env_for(name: str) -> dict[str, str]:
            function_env = dict(base)
            if name == "send-reminder":
                function_env["K_SINK"] = sink_url or f"{sink.url}/sink"
            function_env.update((per_function or {}).get(name, {}))
            return function_env

        stack = cls(store_url, base, mail, sink)
        stack.launch(names, env_for)
        return stack

    def dump(self) -> list[tuple]:
        return dump(self.store_url)

    def mail_by_task(self) -> Counter:
        return Counter(m["X-Nextup-Task"] for m in self.mail.received())

    def message_ids(self) -> Counter:
        return Counter(m["Message-ID"] for m in self.mail.received())

    def sink_events(self) -> list[dict]:
        return [
            {"id": r.headers.get("ce-id"), "type": r.headers.get("ce-type"), "data": r.json()}
            for r in self.sink.requests
            if r.method == "POST"
        ]
