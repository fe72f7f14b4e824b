"""moto's server with DynamoDB's atomicity: `python tests/motoserver.py -H HOST -p PORT`.

moto serves each request on a thread of its own and applies a conditional write, or a
`TransactWriteItems`, by checking its conditions and then writing, without a lock: two
concurrent writers can both pass the same condition, which real DynamoDB never lets
happen (a condition and its write are atomic, transactions are serializable). Tests that
prove exactly-once effects under concurrency need the real guarantee, so here every
request runs to completion before the next one starts. Connections are still served
concurrently; only the work inside moto is taken one request at a time.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class OneAtATime:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))  # the whole body, inside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        OneAtATime(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
