"""moto's server speaking the DynamoDB API, as a peer of tests and benchmarks.

`MotoServer` starts it on a free loopback port and waits until it answers. By default it
runs this module's own server, with DynamoDB's atomicity: moto serves each request on a
thread of its own and applies a conditional write, or a `TransactWriteItems`, by checking
its conditions and then writing, without a lock: two concurrent writers can both pass the
same condition, which real DynamoDB never lets happen (a condition and its write are
atomic, transactions are serializable). Tests that prove exactly-once effects under
concurrency need the real guarantee, so here every request runs to completion before the
next one starts; connections are still served concurrently. `atomic=False` serves
requests concurrently, as moto's own `moto.server` does (the benchmarks' peer, as fast as
moto goes).

Either way a `TransactWriteItems` costs what its items do (`proportionate_transactions`),
not a copy of the whole table per item as in moto itself.

    python -m nextup_dev.moto -H HOST -p PORT

moto is a development dependency: it is imported only by the server process.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from nextup_dev.ports import LOOPBACK, free_port
from nextup_dev.processes import ExitedEarly, Supervised, http_answers

# The credentials moto server takes; the endpoint is the caller's own.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def aws_env(endpoint: str) -> dict[str, str]:
    """What a client needs to reach the DynamoDB at `endpoint` (dummy credentials)."""
    return {"AWS_ENDPOINT_URL_DYNAMODB": endpoint, **AWS_TEST_ENV}


class MotoServer(Supervised):
    """A moto server on loopback; `endpoint` (also `url`) once `start` returns."""

    keep_log = False

    def __init__(self, *, atomic: bool = True, start_timeout: float = 30.0) -> None:
        self.atomic = atomic
        self.port = 0
        self.endpoint = ""
        super().__init__("moto", [], start_timeout=start_timeout)

    @property
    def url(self) -> str:
        return self.endpoint

    def ready(self) -> bool:
        return http_answers(f"{self.endpoint}/moto-api/")

    def start(self, timeout: float | None = None, attempts: int = 3) -> MotoServer:
        """Start it on a free port; again on another when someone took the port meanwhile."""
        for attempt in range(attempts):
            try:
                return self.start_on(free_port(), timeout)
            except ExitedEarly:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def start_on(self, port: int, timeout: float | None = None) -> MotoServer:
        """Start it on `port` (e.g. to bring a peer back where clients expect it) and wait
        until it answers HTTP."""
        self.port = port
        self.argv = [sys.executable, "-m", "nextup_dev.moto", "-H", LOOPBACK, "-p", str(port)]
        self.argv += [] if self.atomic else ["--concurrent"]
        self.endpoint = f"http://{LOOPBACK}:{port}"
        super().start(timeout)
        return self


class OneAtATime:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))  # the whole body, inside


def proportionate_transactions() -> None:
    """Make moto's `TransactWriteItems` cost what its items do, as DynamoDB's does.

    To roll back a cancelled transaction, moto deep-copies the whole table once per item
    of it: a 100-item transaction on a table of 20,000 items takes minutes where DynamoDB
    takes milliseconds, so a benchmark of batched writes would measure moto. Here moto's
    copy is the table itself, and the transaction keeps only the items it touches and
    puts them back when it is cancelled: the same outcome, in proportion."""
    import copy

    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    class _TablesUncopied:  # what moto's models module calls `copy`
        @staticmethod
        def deepcopy(value: Any) -> Any:
            return value if isinstance(value, Table) else copy.deepcopy(value)

    models.copy = _TablesUncopied  # type: ignore[attr-defined]
    transact = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        kept = []
        for entry in transact_items:
            op = next(iter(entry.values()))
            table = self.tables.get(op.get("TableName"))
            key = op.get("Key") or op.get("Item") or {}
            if table is None or table.hash_key_attr not in key:
                continue  # moto refuses it below, before writing anything
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.has_range_key else None
            before = copy.deepcopy(table.get_item(hash_value, range_value))
            kept.append((table, hash_value, range_value, before))
        try:
            transact(self, transact_items)
        except Exception:
            for table, hash_value, range_value, before in reversed(kept):
                table.delete_item(hash_value, range_value)
                if before is not None and range_value is not None:
                    table.items[hash_value][range_value] = before
                elif before is not None:
                    table.items[hash_value] = before
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items


def main() -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description="moto's server with DynamoDB's atomicity")
    parser.add_argument("-H", "--host", default=LOOPBACK)
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument(
        "--concurrent", action="store_true", help="serve requests at once, as moto does"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    proportionate_transactions()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        app if args.concurrent else OneAtATime(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
