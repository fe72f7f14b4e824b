"""Loopback ports: the one `free_port` of `nextup dev`, the tests and the benchmarks."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the kernel's pick); whoever binds it next may
    still lose it to another process, so a peer that must have it retries (see
    `nextup_dev.moto.MotoServer.start`)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
