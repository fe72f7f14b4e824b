"""A picture of every view of the console, taken with a real browser, into `docs/console/`.

    python -m nextup_dev.console.screenshots [--out docs/console] [--chromium /usr/bin/chromium]

Starts its own `nextup dev` (free ports, state in a temporary directory, the project's
manifests as they are), sends the events of a first session (a recurring task, its
completion, an invalid event, a due reminder), fires the reminder sweep from the Clock,
and photographs each view. Re-runnable: it overwrites the PNGs.
Needs Playwright for Python (the `dev` extra) and a Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

VIEWS = ("timeline", "chain", "mail", "deadletters", "state", "functions", "clock", "send")
YEARLY = "0 0 1 1 *"


def quiet_clock(eventing: Path | None, into: Path) -> Path:
    """A copy of the `eventing` directory (None: the manifests rendered from the function
    declarations) whose PingSources tick once a year: a test (or a picture) fires them
    itself, from the console or with `nextup ping`."""
    if eventing is None:
        from nextup_dev.render import eventing_base

        into.mkdir(parents=True)
        for name, text in eventing_base().items():
            (into / name).write_text(text)
    else:
        shutil.copytree(eventing, into)
    for path in into.rglob("*.yaml"):
        text = path.read_text()
        if "kind: PingSource" in text:
            path.write_text(re.sub(r"(?m)^(\s*schedule:).*$", rf"\1 '{YEARLY}'", text))
    return into


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:g} s")
        time.sleep(0.2)


def post(ingress: str, type_: str, data: dict[str, Any], id_: str) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": "/docs/console",
        "ce-type": type_,
        "content-type": "application/json",
    }
    response = httpx.post(ingress, headers=headers, content=json.dumps(data), timeout=10)
    response.raise_for_status()


def first_session(ingress: str, user: str) -> str:
    """The events of README's first session; the id of the completion."""
    due = (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0).isoformat()
    post(
        ingress,
        "todo.task.created",
        {
            "user_id": user,
            "task_id": "water",
            "title": "Water the plants",
            "due_at": due,
            "timezone": "Europe/Berlin",
            "recurrence": {"rule": "FREQ=DAILY"},
            "reminder": {"before": "PT1M"},
            "notify": {"email": f"{user}@example.com"},
        },
        f"{user}-created",
    )
    return f"{user}-done"


def shoot(base: str, out: Path, user: str, chromium: str) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    taken = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860})

        def snap(name: str) -> None:
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=False)
            taken.append(path)

        page.goto(f"{base}/ui#clock")
        page.click("button[data-fire='reminder-sweep']")
        expect(page.locator("#fired")).to_contain_text("202")
        snap("clock")
        page.goto(f"{base}/ui#timeline")
        expect(page.locator("#timeline")).to_contain_text("todo.reminder.sent", timeout=60_000)
        snap("timeline")
        page.locator("tr[data-ref]", has_text="todo.reminder.sent").first.click()
        expect(page.locator("#event .chain")).to_contain_text("mail kept", timeout=30_000)
        snap("mail")
        page.goto(f"{base}/ui#timeline")
        page.click(f"tr[data-ref] >> text={user}-done")
        expect(page.locator("#event")).to_contain_text("todo.task.scheduled", timeout=30_000)
        snap("chain")
        page.goto(f"{base}/ui#deadletters")
        page.click(f"tr[data-id='{user}-bad']")
        page.click("#dry-run-one")
        expect(page.locator("#plan")).to_contain_text("schedule-next")
        snap("deadletters")
        page.goto(f"{base}/ui#state/{user}")
        expect(page.locator("#state")).to_contain_text("next due")
        snap("state")
        page.goto(f"{base}/ui#functions")
        expect(page.locator(".function").first).to_be_visible()
        snap("functions")
        page.goto(f"{base}/ui#send")
        expect(page.locator("#send-data")).to_be_visible()
        snap("send")
        browser.close()
    return taken


def main(argv: list[str] | None = None) -> int:
    import argparse

    from nextup_dev.child import DevChild
    from nextup_dev.stack import default_eventing_dir

    parser = argparse.ArgumentParser(prog="python -m nextup_dev.console.screenshots")
    parser.add_argument("--out", default="docs/console", help="where the PNGs go")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the browser to drive")
    args = parser.parse_args(argv)
    eventing = default_eventing_dir()
    manifests = ("--eventing", str(eventing)) if eventing else ()
    with (
        tempfile.TemporaryDirectory(prefix="nextup-console-") as tmp,
        DevChild(Path(tmp), "--quiet", *manifests) as dev,
    ):
        user = "ann"
        ingress = dev.ingress
        completion = first_session(ingress, user)
        wait(lambda: dev.status()["drained"], 60, "dispatch of the new task")
        post(
            ingress,
            "todo.task.completed",
            {
                "user_id": user,
                "task_id": "water",
                "completed_at": datetime.now(UTC).isoformat(),
            },
            completion,
        )
        post(
            ingress,
            "todo.task.created",
            {"user_id": user, "task_id": "no spaces"},
            f"{user}-bad",
        )
        wait(lambda: list((dev.state_dir / "dead-letters").glob("*.json")), 60, "dead letter")
        # The completed occurrence's reminder is gone; the next one's is a day away:
        # a second task due now gives the sweep something to mail.
        post(
            ingress,
            "todo.task.created",
            {
                "user_id": user,
                "task_id": "call",
                "title": "Call the plumber",
                "due_at": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
                "reminder": {"before": "PT1M"},
                "notify": {"email": f"{user}@example.com"},
            },
            f"{user}-call-{uuid.uuid4().hex[:6]}",
        )
        wait(lambda: dev.status()["drained"], 60, "dispatch")
        for path in shoot(dev.base, Path(args.out), user, args.chromium):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
