"""The function set for the reliability tests: real functions-framework processes over a
real store (SQLite file or DynamoDB on moto server), a real SMTP server and a recording
HTTP sink, each optionally behind a fault proxy.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from storedump import dump

from harness import FunctionProcess, HttpRecorder, MailServer
from nextup.store import Store, open_store

AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


def store_url_for(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'state.db'}"
    return f"dynamodb://rel-{uuid.uuid4().hex[:10]}"


@dataclass
class FunctionSet:
    store_url: str
    env: dict[str, str]
    mail: MailServer
    sink: HttpRecorder
    functions: dict[str, FunctionProcess] = field(default_factory=dict)
    store: Store | None = None

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
            for name, value in {**AWS, "AWS_ENDPOINT_URL_DYNAMODB": moto}.items():
                mp.setenv(name, value)  # the test process reads the real endpoint
            base.update(AWS, AWS_ENDPOINT_URL_DYNAMODB=store_endpoint or moto)
        stack = cls(store_url, base, mail, sink)
        stack.store = open_store(store_url)
        stack.store.init()
        try:
            for name in names:
                function_env = dict(base)
                if name == "send-reminder":
                    function_env["K_SINK"] = sink_url or f"{sink.url}/sink"
                function_env.update((per_function or {}).get(name, {}))
                stack.functions[name] = FunctionProcess(name, function_env).start()
        except Exception:
            stack.stop()
            raise
        return stack

    def urls(self) -> dict[str, str]:
        return {name: f.url for name, f in self.functions.items()}

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

    def log_lines(self) -> list[dict]:
        return [line for f in self.functions.values() for line in f.log_lines()]

    def stop(self) -> None:
        for process in self.functions.values():
            process.stop()
        self.mail.stop()
        self.sink.stop()
        if self.store is not None:
            self.store.close()
