"""The console of `nextup dev` (`/ui`) in a real browser (Playwright driving Chromium),
against a real `nextup dev`; and `nextup deadletters` / `nextup ping` against the same.

The PingSources tick once a year here (`quiet_clock`): every tick is the one the test
fires, from the page or the CLI, so a reminder arrives because of it, in seconds.
"""

from __future__ import annotations

import email
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from devstack import ROOT, DevStack, daily, wait_for
from playwright.sync_api import Browser, Page, expect, sync_playwright

from harness import HttpRecorder, Recorded, cloud_event, wait_until
from nextup import cli
from nextup.functions import ALL
from nextup.store import open_store
from nextup_dev.console.screenshots import quiet_clock

CHROMIUM = "/usr/bin/chromium"
SLOW = 60_000  # ms: what crosses Kafka and a function or two, on two shared cores


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    work = tmp_path_factory.mktemp("dev-console")
    eventing = quiet_clock(ROOT / "eventing" / "base", work / "eventing")
    stack = DevStack(work / "run", "--quiet", eventing=eventing).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        opened.close()
    assert not errors, f"the page's script failed: {errors}"


def post(dev: DevStack, type_: str, data: dict, id_: str) -> None:
    response = dev.post(*cloud_event(type_, data, id_=id_))
    assert response.status_code == 202, response.text


def delivered(dev: DevStack, trigger: str, count: int) -> None:
    wait_for(
        lambda: dev.status()["triggers"][trigger]["delivered"] >= count, 60, f"{trigger} x{count}"
    )


def create_and_complete(dev: DevStack, user: str, task: str, *, created: str, done: str) -> None:
    """A daily task created (and registered) then completed, posted through the ingress."""
    before = dev.status()["triggers"]["schedule-next-task-created"]["delivered"]
    post(dev, "todo.task.created", daily(user, task), created)
    delivered(dev, "schedule-next-task-created", before + 1)
    post(
        dev,
        "todo.task.completed",
        {"user_id": user, "task_id": task, "completed_at": "2026-11-23T10:00:00+01:00"},
        done,
    )


def wait_for_next_occurrence(dev: DevStack, user: str) -> None:
    """Until the user's one task and its next occurrence are both stored."""

    def two() -> bool:
        with open_store(dev.store_url) as store:
            return len(store.list_tasks(user)) == 2

    wait_for(two, 60, "the next occurrence")


def test_the_timeline_shows_a_completion_down_to_the_next_occurrence(
    dev: DevStack, page: Page
) -> None:
    user = f"chain-{uuid.uuid4().hex[:6]}"
    create_and_complete(dev, user, "water", created=f"{user}-created", done=f"{user}-done")

    page.goto(dev.base + "/ui")
    expect(page.locator("#live")).to_have_text("live")
    page.fill("input[name=user]", user)
    page.press("input[name=user]", "Enter")
    row = page.locator("tr[data-ref]", has_text=f"{user}-done")
    expect(row).to_contain_text("delivered", timeout=SLOW)
    expect(page.locator("tr[data-ref]", has_text=f"{user}-created")).to_be_visible()
    row.click()

    chain = page.locator("#event .chain")
    # in -> complete-task's delivery -> its reply -> schedule-next's delivery -> its reply
    expect(chain).to_contain_text("complete-task-task-completed", timeout=SLOW)
    expect(chain).to_contain_text("todo.occurrence.requested", timeout=SLOW)
    expect(chain).to_contain_text("schedule-next-occurrence-requested", timeout=SLOW)
    expect(chain).to_contain_text("todo.task.scheduled", timeout=SLOW)
    expect(chain).to_contain_text("water@20261124T080000Z")  # the next occurrence, stored
    # Each delivery with its Trigger's retry schedule (eventing/base: 10, from 0.5 s).
    expect(chain.locator(".schedule").first).to_contain_text(
        "10 retries after 0.5, 1, 2, 4, 8, 16, ... s (exponential), then dead-lettered"
    )
    replied = chain.locator("li.node[data-type='todo.occurrence.requested']")
    expect(replied.locator(".delivery").first).to_contain_text("200")
    store = open_store(dev.store_url)
    try:
        assert store.get_task(user, "water@20261124T080000Z") is not None
    finally:
        store.close()


def test_a_dead_letter_is_found_dry_run_then_redriven_with_its_data_fixed(
    dev: DevStack, page: Page
) -> None:
    user = f"dead-{uuid.uuid4().hex[:6]}"
    event_id = f"{user}-bad"
    post(dev, "todo.task.created", {"user_id": user, "task_id": "not valid"}, event_id)
    wait_until(
        lambda: [d for d in dev.dead_letters() if d["attributes"]["id"] == event_id],
        30,
        "the dead letter",
    )

    # From the timeline: the event, dead-lettered, links to its dead letter.
    page.goto(dev.base + "/ui#timeline")
    page.fill("input[name=id]", event_id)
    page.press("input[name=id]", "Enter")
    page.locator("tr[data-ref]", has_text=event_id).click()
    expect(page.locator("#event h2")).to_contain_text("dead-lettered", timeout=SLOW)
    page.click("#to-dead-letter")
    expect(page.locator("#letter")).to_contain_text(event_id)
    page.goto(dev.base + "/ui#deadletters")
    letter = page.locator(f"tr[data-id='{event_id}']")
    expect(letter).to_contain_text("400")
    letter.click()
    detail = page.locator("#letter")
    expect(detail).to_contain_text("knativeerrorcode")
    expect(detail).to_contain_text("data.task_id")  # the decoded answer says what is wrong

    page.click("#dry-run-one")
    plan = page.locator("#plan")
    expect(plan).to_contain_text("Dry run: nothing sent")
    expect(plan).to_contain_text("schedule-next-task-created → schedule-next")
    expect(plan).to_contain_text("no receipt")
    store = open_store(dev.store_url)
    try:
        assert store.list_tasks(user) == [], "a dry run sends nothing"
    finally:
        store.close()

    fixed = {"user_id": user, "task_id": "fixed", "title": "Fixed in the console"}
    page.fill("#letter-data", json.dumps(fixed))
    page.click("#redrive-one")
    expect(plan).to_contain_text("Re-driven onto the broker")
    expect(plan).to_contain_text("202")

    def stored():
        with open_store(dev.store_url) as store:
            return store.get_task(user, "fixed")

    task = wait_for(stored, 60, "the re-driven task in the store")
    assert task.title == "Fixed in the console"
    page.goto(dev.base + "/ui#timeline")
    page.fill("input[name=id]", event_id)
    page.press("input[name=id]", "Enter")
    expect(page.locator("tr[data-ref]", has_text=event_id)).to_contain_text(
        "delivered", timeout=SLOW
    )
    page.locator("tr[data-ref]", has_text=event_id).click()
    attempts = page.locator("#event .chain .delivery").first
    expect(attempts).to_contain_text("dead-lettered")  # the first try, kept
    expect(attempts).to_contain_text("202")  # and the re-driven one
    page.goto(dev.base + "/ui#deadletters")
    expect(page.locator(f"tr[data-id='{event_id}']")).to_contain_text("re-driven")


def test_firing_the_reminder_sweep_from_the_page_mails_the_reminder(
    dev: DevStack, page: Page
) -> None:
    user = f"mail-{uuid.uuid4().hex[:6]}"
    due = (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0)
    created = daily(
        user,
        "call",
        due_at=due.isoformat(),
        reminder={"before": "PT1M"},
        notify={"email": f"{user}@example.com"},
    )
    before = dev.status()["triggers"]["schedule-next-task-created"]["delivered"]
    post(dev, "todo.task.created", created, f"{user}-c")
    delivered(dev, "schedule-next-task-created", before + 1)
    assert not mails_for(dev, user), "no tick has come (the schedule is yearly)"

    page.goto(dev.base + "/ui#clock")
    page.click("button[data-fire='reminder-sweep']")
    expect(page.locator("#fired")).to_contain_text("202")
    [path] = wait_until(lambda: mails_for(dev, user), 60, "the reminder mail")
    message = email.message_from_bytes(path.read_bytes())
    assert message["To"] == f"{user}@example.com"

    # The sweep's chain ends in the mail the mailbox kept.
    page.goto(dev.base + "/ui#timeline")
    page.fill("input[name=type]", "todo.reminder.sent")
    page.press("input[name=type]", "Enter")
    page.fill("input[name=user]", user)
    page.press("input[name=user]", "Enter")
    page.locator("tr[data-ref]", has_text="todo.reminder.sent").first.click(timeout=SLOW)
    chain = page.locator("#event .chain")
    expect(chain).to_contain_text("dev.knative.sources.ping")
    expect(chain).to_contain_text(f"mail kept: {path.name}", timeout=SLOW)

    # And the user's state says the reminder went out, by email.
    page.goto(dev.base + f"/ui#state/{user}")
    expect(page.locator("#state .series")).to_contain_text("next due")
    expect(page.locator("#state tr.reminder")).to_contain_text("sent")
    expect(page.locator("#state tr.reminder")).to_contain_text("email")


def test_a_users_state_shows_each_series_with_its_occurrences_and_next_due(
    dev: DevStack, page: Page
) -> None:
    user = f"state-{uuid.uuid4().hex[:6]}"
    create_and_complete(dev, user, "plant", created=f"{user}-c", done=f"{user}-d")
    wait_for_next_occurrence(dev, user)
    page.goto(dev.base + "/ui#state")
    page.fill("input[name=user]", user)
    page.press("input[name=user]", "Enter")
    series = page.locator("#state .series")
    expect(series).to_have_count(1)
    expect(series).to_contain_text("FREQ=DAILY")
    expect(series).to_contain_text("completed")
    expect(series).to_contain_text("plant@20261124T080000Z")
    expect(series.locator(".next-due")).to_have_text("2026-11-24T09:00:00+01:00")


def test_a_live_redraw_keeps_a_value_typed_and_left_before_enter(dev: DevStack, page: Page) -> None:
    """A slow machine (or a person) pauses between typing and Enter: the live redraw that
    comes in that pause must hand back the field with what was typed, not an empty one."""
    page.goto(dev.base + "/ui#state")
    field = page.locator("input[name=user]")
    field.fill("someone-typed")
    # Past the console's "still typing" window, so the redraw is not held back.
    page.wait_for_function("Date.now() - lastEdit > QUIET_MS")
    newcomer = f"late-{uuid.uuid4().hex[:6]}"
    post(dev, "todo.task.created", daily(newcomer, "water"), f"{newcomer}-c")
    expect(page.locator(f"#state a[href='#state/{newcomer}']")).to_have_count(1, timeout=SLOW)
    expect(field).to_have_value("someone-typed")
    expect(field).to_be_focused()
    field.press("Enter")
    expect(page).to_have_url(dev.base + "/ui#state/someone-typed")


def test_functions_and_sending_from_the_catalog(dev: DevStack, page: Page) -> None:
    page.goto(dev.base + "/ui#functions")
    card = page.locator(".function[data-name='schedule-next']")
    expect(card).to_contain_text("up")
    pid = dev.state()["pids"]["schedule-next"]
    expect(card).to_contain_text(f"pid {pid}")
    expect(card.locator("pre")).not_to_be_empty()

    page.goto(dev.base + "/ui#send")
    page.select_option("select[name=type]", "todo.health.probe")
    page.click("#send-button")
    expect(page.locator("#sent")).to_contain_text("202")
    page.click("#sent a")
    expect(page.locator("#event .chain")).to_contain_text("todo.health.reported", timeout=SLOW)


# The CLI, against the same running nextup dev


def mails_for(dev: DevStack, user: str) -> list[Path]:
    return [p for p in dev.mails() if f"{user}@example.com" in p.read_text(errors="replace")]


def run_cli(dev: DevStack, capsys, *argv: str) -> tuple[int, str]:
    code = cli.main([*argv, "--state-dir", str(dev.state_dir)])
    out, err = capsys.readouterr()
    return code, out + err


def test_cli_lists_and_redrives_dead_letters(dev: DevStack, capsys) -> None:
    user = f"cli-{uuid.uuid4().hex[:6]}"
    event_id = f"{user}-bad"
    post(dev, "todo.task.created", {"user_id": user, "task_id": "bad id"}, event_id)
    wait_until(
        lambda: [d for d in dev.dead_letters() if d["attributes"]["id"] == event_id],
        30,
        "the dead letter",
    )

    code, out = run_cli(dev, capsys, "deadletters", "list")
    assert code == 0
    [line] = [ln for ln in out.splitlines() if f"id={event_id}" in ln]
    assert "400" in line and "todo.task.created" in line and "data.task_id" in line
    code, out = run_cli(dev, capsys, "deadletters", "list", "--json")
    assert code == 0
    [letter] = [d for d in json.loads(out) if d["attributes"]["id"] == event_id]
    assert letter["attributes"]["knativeerrorcode"] == "400"

    code, out = run_cli(dev, capsys, "deadletters", "redrive", "--id", event_id, "--dry-run")
    assert code == 0, out
    assert out.startswith("would re-drive  todo.task.created")
    assert "schedule-next-task-created -> schedule-next; no receipt" in out

    fixed = json.dumps({"user_id": user, "task_id": "good"})
    code, out = run_cli(dev, capsys, "deadletters", "redrive", "--id", event_id, "--data", fixed)
    assert code == 0, out
    assert out.startswith("re-driven (202)")

    def stored():
        with open_store(dev.store_url) as store:
            return store.get_task(user, "good")

    wait_for(stored, 60, "the re-driven task")
    # Handled now: a second dry run says the function's receipt has it.
    code, out = run_cli(
        dev, capsys, "deadletters", "redrive", "--id", event_id, "--data", fixed, "--dry-run"
    )
    assert "handled already (receipt 2" in out, out

    # Many at once: by type, a dry run names each with where it would go.
    code, out = run_cli(
        dev, capsys, "deadletters", "redrive", "--type", "todo.task.created", "--dry-run"
    )
    assert code == 0 and f"id={event_id}" in out
    assert all(line.startswith("would re-drive  todo.task.created") for line in out.splitlines())

    code, out = run_cli(dev, capsys, "deadletters", "redrive", "--id", "no-such-id", "--dry-run")
    assert code == 1 and "no dead letter matches" in out


def test_cli_redrive_needs_a_selection(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["deadletters", "redrive", "--dry-run"])
    assert exit_.value.code == 2
    assert "one of the arguments --id --type --since --all is required" in capsys.readouterr().err


def test_cli_ping_fires_a_ping_source_now(dev: DevStack, capsys) -> None:
    before = dev.status()["events"]["ticks"]
    code, out = run_cli(dev, capsys, "ping", "health-canary")
    assert code == 0, out
    assert out.startswith("health-canary -> 202")
    wait_for(lambda: dev.status()["events"]["ticks"] == before + 1, 30, "the tick counted")

    code, out = run_cli(dev, capsys, "ping", "no-such-source")
    assert code == 1
    assert "no PingSource no-such-source; there are: reminder-sweep, health-canary" in out


def test_cli_says_when_no_nextup_dev_runs(tmp_path: Path, capsys) -> None:
    (tmp_path / "dev.json").write_text(json.dumps({"console": "http://127.0.0.1:9/ui"}))
    code = cli.main(["deadletters", "list", "--state-dir", str(tmp_path)])
    assert code == 1
    assert "is nextup dev running here?" in capsys.readouterr().err


def test_functions_scaled_to_zero_show_cold_their_start_times_then_scaled_to_zero(
    tmp_path: Path, browser: Browser
) -> None:
    eventing = quiet_clock(ROOT / "eventing" / "base", tmp_path / "eventing")
    stack = DevStack(
        tmp_path / "run", "--quiet", "--scale-to-zero", "--idle", "2", eventing=eventing
    )
    stack.start()
    page = browser.new_page()
    try:
        page.goto(stack.base + "/ui#functions")
        health = page.locator(".function[data-name='health']")
        expect(health.locator(".badge")).to_have_text("cold")
        expect(health).to_contain_text("cold starts 0")
        post(stack, "todo.health.probe", {}, f"probe-{uuid.uuid4().hex[:6]}")
        # Started by its first event: up, with the time that start took.
        expect(health).to_contain_text("cold starts 1", timeout=SLOW)
        expect(health).to_contain_text("started in")
        # Idle for --idle seconds: stopped again (the view looks every two seconds).
        expect(health.locator(".badge")).to_have_text("scaled to zero", timeout=SLOW)
        expect(page.locator(".function[data-name='complete-task'] .badge")).to_have_text("cold")
    finally:
        page.close()
        stack.stop()


def test_an_events_detail_has_every_attempt_with_its_answer_and_the_wait_before_the_next(
    tmp_path: Path,
) -> None:
    """Stand-ins instead of the functions: one answers 503 twice, then 202."""
    tries: dict[str, int] = {}

    def flaky(request: Recorded) -> tuple[int, dict[str, str], bytes]:
        event_id = request.headers.get("ce-id", "")
        tries[event_id] = tries.get(event_id, 0) + 1
        if tries[event_id] <= 2:
            return 503, {"content-type": "application/json"}, b'{"error": "busy", "field": null}'
        return 202, {"content-type": "application/json"}, b'{"outcome": "recorded"}'

    recorder = HttpRecorder(respond=flaky).start()
    routes = [arg for name in ALL for arg in ("--route", f"{name}={recorder.url}/{name}/")]
    eventing = quiet_clock(ROOT / "eventing" / "base", tmp_path / "eventing")
    stack = DevStack(tmp_path / "run", "--quiet", *routes, eventing=eventing).start()
    try:
        event_id = f"flaky-{uuid.uuid4().hex[:6]}"
        post(stack, "todo.task.deleted", {"user_id": "ann", "task_id": "t1"}, event_id)
        stack.wait_drained(60)

        timeline = httpx.get(f"{stack.base}/ui/api/timeline?id={event_id}", timeout=10).json()
        [entry] = timeline["events"]
        assert entry["outcome"] == "delivered" and entry["user"] == "ann"
        detail = httpx.get(f"{stack.base}/ui/api/events/{entry['ref']}", timeout=10).json()
        [delivery] = detail["event"]["deliveries"]
        assert delivery["trigger"] == "schedule-next-task-deleted"
        first, second, third = delivery["attempts"]
        assert (first["attempt"], first["status"], first["outcome"]) == (1, 503, "retry")
        assert first["retry_in"] == 0.5 and first["body"] == {"error": "busy", "field": None}
        assert (second["attempt"], second["status"], second["retry_in"]) == (2, 503, 1.0)
        assert (third["attempt"], third["status"], third["outcome"]) == (3, 202, "delivered")
        assert third["body"] == {"outcome": "recorded"}
        assert all(a["ms"] >= 0 for a in (first, second, third))
        assert detail["event"]["attributes"]["traceparent"].startswith("00-")  # stamped
    finally:
        stack.stop()
        recorder.stop()


def test_the_consoles_actions_take_json_only(dev: DevStack) -> None:
    """A page elsewhere could post a form or plain text to 127.0.0.1; JSON needs a
    preflight the console never allows, so only its own page and the CLI act."""
    before = dev.status()["events"]["ticks"]
    for path in ("/ui/api/ping/reminder-sweep", "/ui/api/send", "/ui/api/deadletters/redrive"):
        answer = httpx.post(
            dev.base + path, content=b'{"type": "todo.health.probe", "all": true}', timeout=10
        )
        assert answer.status_code == 415, (path, answer.text)
        answer = httpx.post(
            dev.base + path, data={"type": "todo.health.probe", "all": "1"}, timeout=10
        )
        assert answer.status_code == 415, (path, answer.text)
    assert dev.status()["events"]["ticks"] == before


def test_without_the_console_events_flow_and_the_console_commands_say_why_they_cannot(
    tmp_path: Path, capsys
) -> None:
    """`--no-console` (the benchmarks' baseline): no /ui, no stamped traceparent, no ring of
    attempts in the dispatcher; events flow as before."""
    eventing = quiet_clock(ROOT / "eventing" / "base", tmp_path / "eventing")
    stack = DevStack(tmp_path / "run", "--quiet", "--no-console", eventing=eventing).start()
    try:
        assert stack.state()["console"] is None
        assert httpx.get(stack.base + "/ui", timeout=10).status_code in (404, 405)
        assert (
            "--console-port"
            not in Path(f"/proc/{stack.state()['pids']['dispatcher']}/cmdline").read_text()
        )
        user = f"plain-{uuid.uuid4().hex[:6]}"
        create_and_complete(stack, user, "water", created=f"{user}-c", done=f"{user}-d")
        wait_for_next_occurrence(stack, user)
        code, out = run_cli(stack, capsys, "ping", "health-canary")
        assert code == 1
        assert "no console (--no-console)" in out
    finally:
        stack.stop()
