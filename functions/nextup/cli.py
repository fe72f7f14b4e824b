"""The `nextup` command: store administration, task listing, the event catalog, the local
eventing runtime (`nextup dev`, its console at /ui, `nextup deadletters` and `nextup ping`
for it), posting events (`nextup emit`) and explaining recurrence rules (`nextup rrule
explain`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from nextup.errors import EventError


def _store_url(args: argparse.Namespace) -> str:
    from nextup.config import settings

    return args.store or settings().store_url


def _store(args: argparse.Namespace):
    from nextup.store import open_store

    return open_store(_store_url(args))


def _store_init(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        store.init()
    finally:
        store.close()
    print(f"store ready: {store.name}")
    return 0


def _task_row(task, reminder) -> dict:
    return {
        "task_id": task.task_id,
        "title": task.title,
        "status": task.status.value,
        "due_at": task.due_at.isoformat() if task.due_at else None,
        "parent_task_id": task.parent_task_id,
        "series_id": task.series_id,
        "occurrence": task.occurrence,
        "recurrence": task.recurrence.rule if task.recurrence else None,
        "completed_at": task.completed_at.isoformat() if task.completed_at else None,
        "reminder": None
        if reminder is None
        else {
            "status": reminder.status.value,
            "remind_at": reminder.remind_at.isoformat(),
            "channel": reminder.channel,
            "sent_at": reminder.sent_at.isoformat() if reminder.sent_at else None,
            "error": reminder.error,
        },
    }


def _reminder_cell(reminder: dict | None) -> str:
    """What a person wants to know of a reminder: when, or what became of it and why."""
    if reminder is None:
        return "-"
    status = reminder["status"]
    if status == "pending":
        return f"pending {reminder['remind_at']}"
    if status == "sent":
        return f"sent by {reminder['channel']} {reminder['sent_at']}"
    if status == "failed":
        return f"failed: {reminder['error']}"
    return status


def _tasks_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        reminders = {r.task_id: r for r in store.list_reminders(args.user)}
        rows = [_task_row(t, reminders.get(t.task_id)) for t in store.list_tasks(args.user)]
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no tasks for user {args.user} in {store.name}")
        return 0
    table = [
        {
            "TASK": row["task_id"],
            "STATUS": row["status"],
            "DUE": row["due_at"] or "-",
            "REMINDER": _reminder_cell(row["reminder"]),
            "TITLE": row["title"],
        }
        for row in rows
    ]
    # Every column as wide as its widest cell: ids run to 128 characters.
    widths = {name: max(len(name), *(len(r[name]) for r in table)) for name in table[0]}
    for row in [dict.fromkeys(widths, None), *table]:
        cells = [(name if value is None else value) for name, value in row.items()]
        print("  ".join(c.ljust(widths[n]) for c, n in zip(cells, widths, strict=True)).rstrip())
    return 0


def _events_docs(args: argparse.Namespace) -> int:
    from nextup.catalog import render_markdown

    sys.stdout.write(render_markdown())
    return 0


def _route(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not name or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"--route must be NAME=http://HOST:PORT/..., not {text!r}")
    return name, url


# `nextup dev` is the local runtime, a distribution of its own (nextup-dev, in local/) that
# depends on this one, never the other way round: the command finds it by name when run,
# as the runtime finds a handler (tests/test_layers.py holds the core to it).
LOCAL_RUNTIME = "nextup_dev.stack"


# Dead letters read from kafka-console-consumer output (`--records`), and the one selection.
LOCAL_RECORDS = "nextup_dev.console.records"
LOCAL_SELECTION = "nextup_dev.console.redrive"


def _local(name: str):
    """A module of the local runtime, or None after saying how to install it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != "nextup_dev":
            raise
        print(
            "nextup dev is the local runtime, a distribution of its own: install it with "
            "`pip install ./local` from a checkout of nextup (`make dev` does)",
            file=sys.stderr,
        )
        return None


def _dev(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    stack = _local(LOCAL_RUNTIME)
    if stack is None:
        return 2

    options = stack.Options(
        port=args.port,
        kafka=args.kafka,
        store=args.store,
        eventing=Path(args.eventing) if args.eventing else stack.default_eventing_dir(),
        state_dir=Path(args.state_dir),
        scale_to_zero=args.scale_to_zero,
        idle=args.idle,
        routes=dict(args.route or []),
        quiet=args.quiet,
        concurrency=args.concurrency,
        summary_every=args.summary_every,
        console=not args.no_console,
    )
    return asyncio.run(stack.main(options))


def _default_ingress(state_dir: str) -> str:
    """The ingress of the `nextup dev` running here, else its default address."""
    from pathlib import Path

    state = Path(state_dir) / "dev.json"
    try:
        return json.loads(state.read_text())["ingress"]
    except (OSError, ValueError, KeyError):
        return "http://127.0.0.1:8080/nextup/nextup"


def _emit(args: argparse.Namespace) -> int:
    import uuid

    import httpx

    from nextup.envelope import make_event, to_binary, to_structured

    raw = args.data
    if raw.startswith("@"):
        with open(raw[1:], encoding="utf-8") as handle:
            raw = handle.read()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        print(f"nextup emit: --data is not JSON: {exc}", file=sys.stderr)
        return 2
    event = make_event(
        args.type,
        args.source,
        data,
        id_=args.id or str(uuid.uuid4()),
        partition_key=args.partition_key,
        subject=args.subject,
    )
    headers, body = to_structured(event) if args.structured else to_binary(event)
    url = args.to or _default_ingress(args.state_dir)
    try:
        response = httpx.post(url, headers=headers, content=body, timeout=args.timeout)
    except httpx.TransportError as exc:
        hint = (
            "is nextup dev running? Start it with `make dev` (or `nextup dev`) in the "
            "project, or give the broker's address with --to URL"
            if args.to is None
            else "is anything listening there?"
        )
        print(f"nextup emit: {url} did not answer ({type(exc).__name__}): {hint}", file=sys.stderr)
        return 1
    answer = f"{response.status_code} {response.reason_phrase}"
    print(f"{answer}  {event['type']} id={event['id']} -> {url}")
    for name, value in response.headers.items():
        if name.lower().startswith("ce-") or name.lower() in ("content-type", "retry-after"):
            print(f"{name}: {value}")
    if response.content:
        print(response.text)
    return 0 if response.is_success else 1


def _console_url(state_dir: str) -> str | None:
    """The console API of the `nextup dev` running here (from its dev.json), else the
    default address's; None when it runs without its console."""
    from pathlib import Path

    try:
        state = json.loads((Path(state_dir) / "dev.json").read_text())
    except (OSError, ValueError):
        return "http://127.0.0.1:8080/ui/api"
    if "console" in state and state["console"] is None:
        return None
    base = state.get("console") or state.get("healthz", "").removesuffix("/healthz") + "/ui"
    return base + "/api"


def _ask_dev(args: argparse.Namespace, path: str, body: dict | None = None):
    """GET (or POST `body` to) the running nextup dev's console API: the JSON answer, or
    None after saying on stderr why there is none."""
    import httpx

    base = _console_url(args.state_dir)
    if base is None:
        print(
            "nextup: the nextup dev running here has no console (--no-console): restart it "
            "without that option",
            file=sys.stderr,
        )
        return None
    url = base + path
    try:
        if body is None:
            response = httpx.get(url, timeout=args.timeout)
        else:
            response = httpx.post(url, json=body, timeout=args.timeout)
    except httpx.TransportError as exc:
        print(
            f"nextup: {url} did not answer ({type(exc).__name__}): is nextup dev running "
            "here? Start it with `make dev` (or `nextup dev`), or give its --state-dir",
            file=sys.stderr,
        )
        return None
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text[:300]}
    if not response.is_success:
        print(f"nextup: {response.status_code}: {answer.get('error')}", file=sys.stderr)
        return None
    return answer


def _when(at: float | None) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(at).isoformat(timespec="seconds") if at else "-"


_SELECTION_OPTIONS = ("id", "type", "since", "until", "status", "all")


def _selection(args: argparse.Namespace, redrive):
    """The Selection (of nextup_dev.console.redrive) the options name."""
    return redrive.Selection(
        id=args.id or "",
        type=args.type or "",
        status=args.status,
        since=redrive.parse_time(args.since) if args.since else None,
        until=redrive.parse_time(args.until) if args.until else None,
        all=args.all,
    )


def _records(args: argparse.Namespace) -> list | None:
    """The dead letters of kafka-console-consumer lines in --records FILE (`-`: stdin),
    newest first; None after saying why there are none to read."""
    records = _local(LOCAL_RECORDS)
    if records is None:
        return None
    if args.records == "-":
        return records.read(sys.stdin)
    try:
        with open(args.records, encoding="utf-8", errors="replace") as handle:
            return records.read(handle)
    except OSError as exc:
        print(f"nextup: cannot read --records {args.records}: {exc.strerror}", file=sys.stderr)
        return None


def _dead_letter_selection(parser: argparse.ArgumentParser, which) -> None:
    """The options that choose dead letters, the same for `list` (all optional) and
    `redrive` (`which`: one of the first four is required there)."""
    which.add_argument("--id", help="the dead letters of this event id")
    which.add_argument("--type", help="those of this event type")
    which.add_argument("--since", help="those dead-lettered since (ISO 8601)")
    which.add_argument("--all", action="store_true", help="all of them")
    parser.add_argument("--until", help="and dead-lettered until (ISO 8601)")
    parser.add_argument("--status", type=int, help="and failed with this status code")


def _deadletters_list(args: argparse.Namespace) -> int:
    if args.records is not None:
        letters = _records(args)
    else:
        answer = _ask_dev(args, "/deadletters")
        letters = None if answer is None else answer["letters"]
    if letters is None:
        return 1
    if any(getattr(args, name) for name in _SELECTION_OPTIONS):
        redrive = _local(LOCAL_SELECTION)
        if redrive is None:
            return 2
        letters = redrive.select(letters, _selection(args, redrive))
    if args.json:
        print(json.dumps(letters, indent=2))
        return 0
    if not letters:
        print("no dead letters")
        return 0
    for letter in letters:
        attributes, error = letter["attributes"], letter["error"]
        body = error.get("body")
        why = body.get("error") if isinstance(body, dict) else body
        again = "  (re-driven)" if letter.get("redriven") else ""
        print(
            f"{_when(letter.get('at'))}  {error.get('status') or '-'}  {attributes.get('type')}"
            f"  id={attributes.get('id')}  {why or ''}{again}".rstrip()
        )
    return 0


def _deadletters_redrive(args: argparse.Namespace) -> int:
    if (args.records is None) != (args.to is None):
        print(
            "nextup: --records FILE and --to URL go together: dead letters read from a "
            "consumer's output are posted to the broker --to names",
            file=sys.stderr,
        )
        return 2
    body: dict = {"dry_run": args.dry_run}
    for name in ("id", "type", "since", "until", "status"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    if args.all:
        body["all"] = True
    if args.data is not None:
        try:
            body["data"] = json.loads(args.data)
        except ValueError as exc:
            print(f"nextup: --data is not JSON: {exc}", file=sys.stderr)
            return 2
    if args.records is not None:
        return _redrive_records(args, body.get("data"))
    answer = _ask_dev(args, "/deadletters/redrive", body)
    if answer is None:
        return 1
    if not answer["letters"]:
        print("no dead letter matches")
        return 1
    for plan in answer["letters"]:
        targets = ", ".join(
            f"{t['trigger']} -> {t['function'] or t['uri']}" for t in plan["triggers"]
        )
        handled = plan.get("handled")
        receipt = f"handled already (receipt {handled['status']})" if handled else "no receipt"
        head = "would re-drive" if answer["dry_run"] else f"re-driven ({plan.get('posted')})"
        print(f"{head}  {plan['type']} id={plan['id']}  to {targets or 'no Trigger'}; {receipt}")
    return 0


def _redrive_records(args: argparse.Namespace, data) -> int:
    """Re-drive dead letters read from consumer output: each chosen event POSTed to --to in
    binary mode, without the knativeerror* extensions. No store here, so no receipt check."""
    import httpx

    redrive = _local(LOCAL_SELECTION)
    if redrive is None:
        return 2
    letters = _records(args)
    if letters is None:
        return 1
    chosen = redrive.newest_per_event(redrive.select(letters, _selection(args, redrive)))
    if not chosen:
        print("no dead letter matches")
        return 1
    if data is not None and len(chosen) != 1:
        print("nextup: fixed data re-drives one dead letter: select it by its id", file=sys.stderr)
        return 1
    records = _local(LOCAL_RECORDS)
    failed = 0
    for letter in chosen:
        headers, body = records.http_request(letter, data)
        event = f"{letter['attributes'].get('type')} id={letter['attributes'].get('id')}"
        if args.dry_run:
            print(
                f"would re-drive  {event}  to {args.to}; receipt not checked (--records "
                "reads no store: a function that handled it answers it as a duplicate)"
            )
            continue
        try:
            response = httpx.post(args.to, headers=headers, content=body, timeout=args.timeout)
        except httpx.TransportError as exc:
            print(f"not re-driven ({type(exc).__name__})  {event}  to {args.to}: no answer")
            failed += 1
            continue
        answer = f": {response.text[:300]}" if not response.is_success and response.text else ""
        print(f"re-driven ({response.status_code})  {event}  to {args.to}{answer}")
        failed += not response.is_success
    return 1 if failed else 0


def _ping(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    answer = _ask_dev(args, f"/ping/{quote(args.name, safe='')}", {})
    if answer is None:
        return 1
    print(f"{answer['detail']}  (tick id={answer['id']})")
    return 0 if answer.get("status") and answer["status"] < 300 else 1


def _dev_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", default=".nextup", help="where nextup dev keeps dev.json")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait")


def _rrule_explain(args: argparse.Namespace) -> int:
    """The rule in English, then its next occurrences (a RuleError exits 2 via `main`)."""
    from datetime import UTC, datetime

    from nextup.fields import zone
    from nextup.recurrence.explain import explain, upcoming

    tz = zone(args.tz)
    if args.start:
        start = datetime.fromisoformat(args.start)
        start = start.replace(tzinfo=tz) if start.tzinfo is None else start.astimezone(tz)
    else:
        start = datetime.now(UTC).replace(second=0, microsecond=0).astimezone(tz)
    print(explain(args.rule, start=start, tz=args.tz))
    for when in upcoming(args.rule, start=start, count=args.count):
        print(when.isoformat())
    return 0


class _Help(argparse.HelpFormatter):
    """Every option's default in --help (where it has one worth saying), and descriptions
    filled paragraph by paragraph."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
        return "\n\n".join(fill(p, width, indent) for p in paragraphs if p)


def _commands(parser: argparse.ArgumentParser, title: str) -> argparse._SubParsersAction:
    """Sub-commands; with none given, the parser's own help (not "required: ...")."""

    def usage(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(run=usage)
    return parser.add_subparsers(title=title, metavar="COMMAND")


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        help="store URL, sqlite:///PATH or dynamodb://TABLE "
        "(default: NEXTUP_STORE_URL, else sqlite:///.nextup/state.db)",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="nextup", description=__doc__, formatter_class=_Help)
    commands = _commands(root, "commands")

    store = commands.add_parser("store", help="store administration", formatter_class=_Help)
    store_commands = _commands(store, "store commands")
    init = store_commands.add_parser(
        "init",
        help="create the DynamoDB table (the SQLite store creates itself on first use)",
        formatter_class=_Help,
    )
    _store_option(init)
    init.set_defaults(run=_store_init)

    tasks = commands.add_parser("tasks", help="look at tasks", formatter_class=_Help)
    task_commands = _commands(tasks, "tasks commands")
    listing = task_commands.add_parser(
        "list", help="a user's tasks and what became of their reminders", formatter_class=_Help
    )
    listing.add_argument("--user", required=True, help="the user whose tasks to list")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    _store_option(listing)
    listing.set_defaults(run=_tasks_list)

    events = commands.add_parser("events", help="the event catalog", formatter_class=_Help)
    event_commands = _commands(events, "events commands")
    docs = event_commands.add_parser("docs", help="print docs/EVENTS.md", formatter_class=_Help)
    docs.set_defaults(run=_events_docs)

    rrule = commands.add_parser("rrule", help="recurrence rules", formatter_class=_Help)
    rrule_commands = _commands(rrule, "rrule commands")
    explain = rrule_commands.add_parser(
        "explain",
        help="a rule (RRULE or phrase) in English and its next occurrences",
        formatter_class=_Help,
    )
    explain.add_argument("rule", help="e.g. 'FREQ=MONTHLY;BYDAY=2TU' or 'every 2nd tuesday'")
    explain.add_argument("--start", help="series start, ISO 8601 (default: now, to the minute)")
    explain.add_argument("--tz", default="UTC", help="IANA zone of the series")
    explain.add_argument("--count", type=int, default=5, help="occurrences to list")
    explain.set_defaults(run=_rrule_explain)

    dev = commands.add_parser(
        "dev",
        help="run the whole function set locally on Kafka, from the eventing/ manifests",
        description="Kafka (Tansu), the broker ingress, a dispatcher for every Trigger, the "
        "PingSources, the functions and a local mailbox; Ctrl-C stops everything.",
        formatter_class=_Help,
    )
    dev.add_argument("--port", type=int, default=8080, help="broker ingress port")
    dev.add_argument("--kafka", metavar="HOST:PORT", help="use this Kafka instead of Tansu")
    dev.add_argument(
        "--store", help="store URL (default: NEXTUP_STORE_URL, else sqlite:///.nextup/state.db)"
    )
    dev.add_argument(
        "--eventing",
        help="directory of eventing manifests (default: eventing/base of the checkout, else "
        "rendered from the function declarations)",
    )
    dev.add_argument("--state-dir", default=".nextup", help="mail, dead letters, logs")
    dev.add_argument(
        "--scale-to-zero",
        action="store_true",
        help="start each function on its first event, stop it after --idle seconds",
    )
    dev.add_argument("--idle", type=float, default=60.0, help="idle seconds before scaling to zero")
    dev.add_argument(
        "--route",
        type=_route,
        action="append",
        metavar="NAME=URL",
        help="deliver to URL instead of starting function NAME (repeatable)",
    )
    dev.add_argument(
        "--quiet", action="store_true", help="no line per event; failures and tables only"
    )
    dev.add_argument(
        "--concurrency", type=int, default=16, help="deliveries in flight per unordered Trigger"
    )
    dev.add_argument(
        "--summary-every", type=float, default=30.0, help="seconds between per-Trigger tables"
    )
    dev.add_argument(
        "--no-console",
        action="store_true",
        help="no web console at /ui (nor the dispatcher's record of attempts it reads)",
    )
    dev.set_defaults(run=_dev)

    emit = commands.add_parser(
        "emit", help="post a CloudEvent to the local broker or any URL", formatter_class=_Help
    )
    emit.add_argument("type", help="the event type, e.g. todo.task.created")
    emit.add_argument("--data", required=True, help="the data as JSON, or @FILE")
    emit.add_argument("--source", default="/nextup/cli", help="the event source")
    emit.add_argument("--id", help="the event id (default: a new UUID)")
    emit.add_argument("--subject", help="the subject attribute")
    emit.add_argument("--partition-key", help="the partitionkey extension")
    emit.add_argument("--to", help="where to POST (default: the running nextup dev's ingress)")
    emit.add_argument("--structured", action="store_true", help="structured mode (default binary)")
    emit.add_argument("--state-dir", default=".nextup", help="where nextup dev keeps dev.json")
    emit.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    emit.set_defaults(run=_emit)

    dead = commands.add_parser(
        "deadletters",
        help="the running nextup dev's dead letters, or a topic's read by "
        "kafka-console-consumer (--records): list, re-drive",
        formatter_class=_Help,
    )
    dead_commands = _commands(dead, "deadletters commands")
    records_help = (
        "read the dead letters from FILE (- for stdin), lines of kafka-console-consumer.sh "
        "--property print.headers=true --property headers.separator='|', instead of asking "
        "the running nextup dev"
    )
    dead_list = dead_commands.add_parser(
        "list",
        help="every dead letter, newest first, with why it failed",
        description="Every dead letter, newest first, with why it failed; the selection "
        "options narrow the list.",
        formatter_class=_Help,
    )
    dead_list.add_argument("--json", action="store_true", help="print a JSON array")
    _dead_letter_selection(dead_list, dead_list)
    dead_list.add_argument("--records", metavar="FILE", help=records_help)
    _dev_client_options(dead_list)
    dead_list.set_defaults(run=_deadletters_list)
    redrive = dead_commands.add_parser(
        "redrive",
        help="post dead letters back onto the broker",
        description="Post the chosen dead letters' events back onto the broker, as first "
        "sent (same source and id). --dry-run shows where each would go and whether a "
        "receipt says it was handled already.\n\nWith --records FILE the dead letters are "
        "read from a consumer's output (the kind cluster's topic, infra/kind/dead-letters.sh) "
        "and posted to the broker at --to URL; there is no store to look for receipts in.",
        formatter_class=_Help,
    )
    _dead_letter_selection(redrive, redrive.add_mutually_exclusive_group(required=True))
    redrive.add_argument("--data", help="fixed data (JSON) for the one chosen with --id")
    redrive.add_argument("--dry-run", action="store_true", help="show, send nothing")
    redrive.add_argument("--records", metavar="FILE", help=records_help)
    redrive.add_argument(
        "--to", metavar="URL", help="the broker to post to (needed with --records, only then)"
    )
    _dev_client_options(redrive)
    redrive.set_defaults(run=_deadletters_redrive)

    ping = commands.add_parser(
        "ping",
        help="fire a PingSource of the running nextup dev now",
        formatter_class=_Help,
    )
    ping.add_argument("name", help="the PingSource, e.g. reminder-sweep")
    _dev_client_options(ping)
    ping.set_defaults(run=_ping)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except EventError as exc:
        print(f"nextup: {exc.error}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"nextup: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
