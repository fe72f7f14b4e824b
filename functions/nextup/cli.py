"""The `nextup` command: store administration, task listing and the event catalog."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from nextup.errors import EventError


def _store(args: argparse.Namespace):
    from nextup.config import settings
    from nextup.store import open_store

    return open_store(args.store or settings().store_url)


def _store_init(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        store.init()
    finally:
        store.close()
    print(f"store ready: {args.store or 'NEXTUP_STORE_URL / default'}")
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
