"""The store kinds every test and benchmark runs over, and where each keeps its data."""

from __future__ import annotations

import uuid
from pathlib import Path

SQLITE = "sqlite"
DYNAMODB = "dynamodb"
STORE_KINDS = (SQLITE, DYNAMODB)


def store_url(kind: str, directory: Path, *, prefix: str = "nextup") -> str:
    """A fresh store of `kind`: an SQLite file in `directory`, or a DynamoDB table with a
    name of its own (on whatever endpoint AWS_ENDPOINT_URL_DYNAMODB names)."""
    if kind == SQLITE:
        return f"sqlite:///{directory / 'state.db'}"
    if kind == DYNAMODB:
        return f"dynamodb://{prefix}-{uuid.uuid4().hex[:10]}"
    raise ValueError(f"no store kind {kind!r}; the kinds are {', '.join(STORE_KINDS)}")
