"""The todo app's own API, as the seed's services called it through Dapr service invocation:
`POST {backend}/api/tasks` to create an occurrence, `GET {backend}/api/users/{id}` for an address.
"""

from __future__ import annotations

from typing import Any

import httpx

from nextup.dependencies import BACKEND
from nextup.errors import NotFound, Unavailable


def _transient(response: httpx.Response) -> bool:
    return BACKEND.transient_status(response.status_code)  # the table's, in one place


async def create_task(
    client: httpx.AsyncClient,
    base: str,
    task: dict[str, Any],
    *,
    idempotency_key: str,
    timeout: float,
) -> None:
    try:
        response = await client.post(
            f"{base.rstrip('/')}/api/tasks",
            json=task,
            headers={"Idempotency-Key": idempotency_key},
            timeout=timeout,
        )
    except httpx.TransportError as exc:
        raise Unavailable(f"backend unreachable: {type(exc).__name__}", field="backend") from exc
    # 409 means the backend already has it under this key: what we wanted.
    if response.is_success or response.status_code == 409:
        return
    if _transient(response):
        raise Unavailable(f"backend answered {response.status_code}", field="backend")
    raise RuntimeError(f"backend refused the task: {response.status_code} {response.text[:200]}")


async def user_email(
    client: httpx.AsyncClient, base: str, user_id: str, *, timeout: float
) -> str | None:
    """The user's e-mail address, or NotFound if the backend does not know the user."""
    try:
        response = await client.get(f"{base.rstrip('/')}/api/users/{user_id}", timeout=timeout)
    except httpx.TransportError as exc:
        raise Unavailable(f"backend unreachable: {type(exc).__name__}", field="backend") from exc
    if response.status_code == 404:
        raise NotFound(f"unknown user {user_id}", field="data.user_id")
    if _transient(response):
        raise Unavailable(f"backend answered {response.status_code}", field="backend")
    if not response.is_success:
        raise RuntimeError(f"backend answered {response.status_code} for user {user_id}")
    body = response.json()
    email = body.get("email") if isinstance(body, dict) else None
    return email if isinstance(email, str) and email else None
