"""Fixtures shared by every test suite: real peers only (see `peers`)."""

from peers import moto_server

__all__ = ["moto_server"]
