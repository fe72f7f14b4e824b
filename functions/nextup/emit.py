"""Delivering emitted events to the sink (`K_SINK`): binary-mode CloudEvents over HTTP."""

from __future__ import annotations

import httpx

from nextup.dependencies import SINK
from nextup.envelope import CloudEvent, to_binary
from nextup.errors import Unavailable


class SinkRejected(Exception):
    """The sink refused an event we built: a bug on our side, not a transient fault."""


async def post(client: httpx.AsyncClient, url: str, event: CloudEvent, *, timeout: float) -> None:
    headers, body = to_binary(event)
    try:
        response = await client.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.TransportError as exc:
        raise Unavailable(f"sink unreachable: {type(exc).__name__}", field="sink") from exc
    if response.is_success:
        return
    if SINK.transient_status(response.status_code):  # what is transient: the table's
        raise Unavailable(f"sink answered {response.status_code}", field="sink")
    raise SinkRejected(
        f"sink refused event {event['id']}: {response.status_code} {response.text[:200]}"
    )


async def ping(client: httpx.AsyncClient, url: str, *, timeout: float) -> None:
    """Any HTTP answer proves the sink is there; only a transport failure means it is down."""
    try:
        await client.request("OPTIONS", url, timeout=timeout)
    except httpx.TransportError as exc:
        raise Unavailable(f"sink unreachable: {type(exc).__name__}", field="sink") from exc
