"""Fixtures for the function tests: a real function set per module (see `functionset`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from functionset import Stack, start_stack

from peers import STORE_KINDS


@pytest.fixture(scope="module", params=STORE_KINDS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, moto_server: str
) -> Iterator[Stack]:
    """The function set in reply mode (no K_SINK), over each store backend, in this
    process (the fast layer: see `inprocess`)."""
    with pytest.MonkeyPatch.context() as mp:
        s = start_stack(request.param, tmp_path_factory, moto_server, mp, in_process=True)
        yield s
        s.stop()


@pytest.fixture
def user() -> str:
    """A fresh user per test, so tests sharing a stack never see each other's tasks."""
    return f"u-{uuid.uuid4().hex[:10]}"
