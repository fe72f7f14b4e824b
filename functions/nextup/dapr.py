"""Publishing emitted events through a Dapr sidecar, as the seed's services ran.

A Dapr subscriber cannot answer with an event (Dapr reads only SUCCESS, RETRY or DROP), so
a function that runs beside a sidecar (`DAPR_HTTP_PORT`, which `dapr run` and the sidecar
injector set) publishes what it emits through the sidecar's publish API instead. The
body is the CloudEvent itself, as `application/cloudevents+json`: Dapr then publishes it
as it is, keeping our id (the same on every redelivery) rather than wrapping it in an
envelope of its own.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from nextup.dependencies import DAPR
from nextup.envelope import CloudEvent, to_structured
from nextup.errors import Unavailable


def _base(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1.0"


async def publish(
    client: httpx.AsyncClient,
    port: int,
    pubsub: str,
    topic: str,
    event: CloudEvent,
    *,
    timeout: float,
) -> None:
    """Publish `event` on `topic`; Unavailable unless the sidecar took it (a 2xx).

    Every refusal is retried (`dependencies.DAPR`): the sidecar answers 4xx for a pubsub
    component it does not have (yet) as well as for a broker that is down, and nothing is
    lost by trying again. A refusal the table called permanent would raise RuntimeError.
    """
    headers, body = to_structured(event)
    url = f"{_base(port)}/publish/{quote(pubsub, safe='')}/{quote(topic, safe='')}"
    try:
        response = await client.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.TransportError as exc:
        raise Unavailable(f"Dapr sidecar unreachable: {type(exc).__name__}", field="dapr") from exc
    if response.is_success:
        return
    if not DAPR.transient_status(response.status_code):
        raise RuntimeError(f"Dapr sidecar refused to publish: {response.status_code}")
    raise Unavailable(
        f"Dapr sidecar did not publish to {pubsub}/{topic}: "
        f"{response.status_code} {response.text[:200]}",
        field="dapr",
    )


async def ping(client: httpx.AsyncClient, port: int, *, timeout: float) -> None:
    """The sidecar's own health endpoint: 204 when it is up."""
    try:
        response = await client.get(f"{_base(port)}/healthz", timeout=timeout)
    except httpx.TransportError as exc:
        raise Unavailable(f"Dapr sidecar unreachable: {type(exc).__name__}", field="dapr") from exc
    if not response.is_success:
        raise Unavailable(f"Dapr sidecar is not healthy: {response.status_code}", field="dapr")
