"""Fixtures shared by every test suite: real peers only (see `peers`); and the fast layer's
rule: a test marked `fast` runs its functions in-process and starts none as a process."""

from collections.abc import Iterator

import pytest

import harness
from peers import moto_server

__all__ = ["moto_server"]


def _processes_allowed_unless_fast(item: pytest.Item) -> Iterator[None]:
    harness.processes_allowed = item.get_closest_marker("fast") is None
    try:
        return (yield)
    finally:
        harness.processes_allowed = True


# While a test is set up (its fixtures too) and while it runs.
pytest_runtest_setup = pytest.hookimpl(wrapper=True)(_processes_allowed_unless_fast)
pytest_runtest_call = pytest.hookimpl(wrapper=True)(_processes_allowed_unless_fast)
