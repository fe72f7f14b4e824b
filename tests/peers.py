"""Real peers for tests, started as subprocesses: a moto server speaking the DynamoDB API
(with DynamoDB's atomic conditional writes: see `nextup_dev.moto`).

A peer that does not come up is an error, never a skip: a green run must mean the tests
ran against it. Each pytest-xdist worker starts its own server (session scope).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nextup_dev.moto import MotoServer
from nextup_dev.ports import free_port
from nextup_dev.stores import STORE_KINDS

__all__ = ["STORE_KINDS", "MotoServer", "free_port", "moto_server"]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto server for this test session (this xdist worker)."""
    server = MotoServer()
    try:
        yield server.start().endpoint
    finally:
        server.stop()
