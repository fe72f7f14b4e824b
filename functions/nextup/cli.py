"""The `nextup` command: store administration, task listing, the event catalog, the local
eventing runtime (`nextup dev`), posting events (`nextup emit`) and explaining recurrence
rules (`nextup rrule explain`)."""

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
    print(f"store ready: {_store_url(args)}")
    return 0


def _task_row(task) -> dict:
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
    }


def _tasks_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        rows = [_task_row(task) for task in store.list_tasks(args.user)]
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no tasks for user {args.user}")
        return 0
    widths = {"task_id": 34, "status": 9, "due_at": 25}
    print(f"{'TASK':<34} {'STATUS':<9} {'DUE':<25} TITLE")
    for row in rows:
        print(
            f"{row['task_id']:<{widths['task_id']}} {row['status']:<{widths['status']}} "
            f"{row['due_at'] or '-':<{widths['due_at']}} {row['title']}"
        )
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


def _dev(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from nextup.dev.stack import Options, default_eventing_dir, main

    options = Options(
        port=args.port,
        kafka=args.kafka,
        store=args.store,
        eventing=Path(args.eventing) if args.eventing else default_eventing_dir(),
        state_dir=Path(args.state_dir),
        scale_to_zero=args.scale_to_zero,
        idle=args.idle,
        routes=dict(args.route or []),
        quiet=args.quiet,
        concurrency=args.concurrency,
        summary_every=args.summary_every,
    )
    return asyncio.run(main(options))


def _dev_dispatcher(args: argparse.Namespace) -> int:
    from nextup.dev.dispatcher import serve

    return serve(args.eventing, args.kafka, dict(args.route or []), args.concurrency)


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
        print(f"nextup emit: {url} did not answer: {type(exc).__name__}", file=sys.stderr)
        return 1
    answer = f"{response.status_code} {response.reason_phrase}"
    print(f"{answer}  {event['type']} id={event['id']} -> {url}")
    for name, value in response.headers.items():
        if name.lower().startswith("ce-") or name.lower() in ("content-type", "retry-after"):
            print(f"{name}: {value}")
    if response.content:
        print(response.text)
    return 0 if response.is_success else 1


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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="nextup", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    store = commands.add_parser("store", help="store administration")
    store_commands = store.add_subparsers(dest="store_command", required=True)
    init = store_commands.add_parser("init", help="create the DynamoDB table or SQLite schema")
    init.add_argument("--store", help="store URL (default: NEXTUP_STORE_URL)")
    init.set_defaults(run=_store_init)

    tasks = commands.add_parser("tasks", help="look at tasks")
    task_commands = tasks.add_subparsers(dest="tasks_command", required=True)
    listing = task_commands.add_parser("list", help="a user's tasks")
    listing.add_argument("--user", required=True, help="the user whose tasks to list")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.add_argument("--store", help="store URL (default: NEXTUP_STORE_URL)")
    listing.set_defaults(run=_tasks_list)

    events = commands.add_parser("events", help="the event catalog")
    event_commands = events.add_subparsers(dest="events_command", required=True)
    docs = event_commands.add_parser("docs", help="print docs/EVENTS.md")
    docs.set_defaults(run=_events_docs)

    rrule = commands.add_parser("rrule", help="recurrence rules")
    rrule_commands = rrule.add_subparsers(dest="rrule_command", required=True)
    explain = rrule_commands.add_parser(
        "explain", help="a rule (RRULE or phrase) in English and its next occurrences"
    )
    explain.add_argument("rule", help="e.g. 'FREQ=MONTHLY;BYDAY=2TU' or 'every 2nd tuesday'")
    explain.add_argument("--start", help="series start, ISO 8601 (default: now, to the minute)")
    explain.add_argument("--tz", default="UTC", help="IANA zone of the series (default UTC)")
    explain.add_argument("--count", type=int, default=5, help="occurrences to list (default 5)")
    explain.set_defaults(run=_rrule_explain)

    dev = commands.add_parser(
        "dev",
        help="run the whole function set locally on Kafka, from the eventing/ manifests",
        description="Kafka (Tansu), the broker ingress, one dispatcher per Trigger, the "
        "PingSources, the functions, a local mailbox; Ctrl-C stops everything.",
    )
    dev.add_argument("--port", type=int, default=8080, help="broker ingress port (default 8080)")
    dev.add_argument("--kafka", metavar="HOST:PORT", help="use this Kafka instead of Tansu")
    dev.add_argument(
        "--store", help="store URL (default: NEXTUP_STORE_URL or sqlite:///.nextup/state.db)"
    )
    dev.add_argument("--eventing", help="directory of eventing manifests (default: eventing/)")
    dev.add_argument(
        "--state-dir", default=".nextup", help="mail, dead letters, logs (default .nextup)"
    )
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
    dev.set_defaults(run=_dev)

    # Internal: the dispatcher as its own process, started by `nextup dev`.
    dispatcher = commands.add_parser("dev-dispatcher", help=argparse.SUPPRESS)
    dispatcher.add_argument("--kafka", required=True)
    dispatcher.add_argument("--eventing", required=True)
    dispatcher.add_argument("--route", type=_route, action="append")
    dispatcher.add_argument("--concurrency", type=int, default=16)
    dispatcher.set_defaults(run=_dev_dispatcher)

    emit = commands.add_parser("emit", help="post a CloudEvent to the local broker or any URL")
    emit.add_argument("type", help="the event type, e.g. todo.task.created")
    emit.add_argument("--data", required=True, help="the data as JSON, or @FILE")
    emit.add_argument(
        "--source", default="/nextup/cli", help="the event source (default /nextup/cli)"
    )
    emit.add_argument("--id", help="the event id (default: a new UUID)")
    emit.add_argument("--subject", help="the subject attribute")
    emit.add_argument("--partition-key", help="the partitionkey extension")
    emit.add_argument("--to", help="where to POST (default: the running nextup dev's ingress)")
    emit.add_argument("--structured", action="store_true", help="structured mode (default binary)")
    emit.add_argument("--state-dir", default=".nextup", help="where nextup dev keeps dev.json")
    emit.add_argument("--timeout", type=float, default=10.0)
    emit.set_defaults(run=_emit)
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
