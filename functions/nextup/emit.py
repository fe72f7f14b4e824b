"""Delivering emitted events to the sink (`K_SINK`): binary-mode CloudEvents over HTTP."""

from __future__ import annotations

import httpx

from nextup.envelope import CloudEvent, to_binary
from nextup.errors import Unavailable

# A broker ingress answers these while it is starting, overloaded or being rolled.
RETRYABLE = {404, 408, 409, 425, 429}


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
    if response.status_code >= 500 or response.status_code in RETRYABLE:
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
