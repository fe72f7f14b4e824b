"""Fixtures shared by every test suite: real peers only (see `peers`); and the fast layer's
rule: a test marked `fast` runs its functions in-process and starts none as a process."""

from collections.abc import Iterator

import pytest

import harness
from peers import moto_server

__all__ = ["moto_server"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    harness.processes_allowed = item.get_closest_marker("fast") is None
    try:
        return (yield)
    finally:
        harness.processes_allowed = True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    harness.processes_allowed = item.get_closest_marker("fast") is None
    try:
        return (yield)
    finally:
        harness.processes_allowed = True
