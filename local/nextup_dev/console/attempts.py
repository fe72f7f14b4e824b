"""Every delivery attempt the dispatcher makes, kept in a bounded ring, for the console.

The dispatcher reports counts per interval, not a line per event; the console's detail
comes from here instead: one `deque.append` of a tuple per attempt (references only, no
formatting), read by `nextup dev` over a loopback socket only while a browser is open.

The protocol is one line each way: `since <seq>\\n` in, one JSON array of the attempts
after `seq` out (the oldest first), then the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from typing import Any

RING = 20_000  # attempts kept: a few times the timeline's 10,000 events
BODY_LIMIT = 4096  # characters of an answer's body shown


def _text(body: bytes) -> Any:
    text = body[:BODY_LIMIT].decode(errors="replace")
    with contextlib.suppress(ValueError):
        return json.loads(text)
    return text


def _data(event: Any) -> Any:
    data = event.data
    if isinstance(data, (bytes, bytearray)):
        return _text(bytes(data))
    return data


class AttemptLog:
    """The ring. `add` is all the dispatcher pays per attempt.

    Each entry is one flat tuple of what the delivery had at hand anyway (the attribute
    dict, the answer's status, time, body and headers): nothing is parsed, copied or
    formatted. A reply is kept as the answer's headers and body, made an event again only
    when someone reads it.
    """

    def __init__(self, limit: int = RING) -> None:
        self.ring: deque[tuple[Any, ...]] = deque(maxlen=limit)
        self._seq = itertools.count(1)

    def add(
        self,
        trigger: str,
        attributes: dict[str, str],
        attempt: int,
        answer: Any,
        outcome: str,
        wait: float | None = None,
        reply: bool = False,
    ) -> None:
        self.ring.append(
            (
                next(self._seq),
                time.time(),
                trigger,
                attributes,
                attempt,
                answer.status,
                answer.ms,
                answer.error,
                answer.body,
                outcome,
                wait,
                answer.headers if reply else None,
            )
        )

    def since(self, seq: int) -> list[dict[str, Any]]:
        """The attempts after `seq`, as JSON-ready dicts (formatting happens here, when asked)."""
        out = []
        for entry in list(self.ring):
            if entry[0] <= seq:
                continue
            (
                seq_,
                at,
                trigger,
                attributes,
                attempt,
                status,
                ms,
                error,
                body,
                outcome,
                wait,
                reply,
            ) = entry
            out.append(
                {
                    "seq": seq_,
                    "at": at,
                    "trigger": trigger,
                    "event": attributes,
                    "attempt": attempt,
                    "status": status,
                    "ms": ms,
                    "error": error,
                    "body": _text(body) if body else None,
                    "outcome": outcome,
                    "retry_in": wait,
                    "reply": None if reply is None else _reply(reply, body),
                }
            )
        return out


def _reply(headers: dict[str, str], body: bytes) -> dict[str, Any] | None:
    from nextup.envelope import parse_http
    from nextup.errors import EventError

    try:
        event = parse_http(headers, body)
    except EventError:
        return None
    return {"attributes": dict(event.get_attributes()), "data": _data(event)}


async def serve(log: AttemptLog, port: int) -> asyncio.Server:
    """Answer `since <seq>` on 127.0.0.1:`port`."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            word, _, number = line.decode().strip().partition(" ")
            seq = int(number) if word == "since" and number.isdigit() else 0
            writer.write(json.dumps(log.since(seq), default=str).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(answer, "127.0.0.1", port)


async def fetch(port: int, seq: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The dispatcher's attempts after `seq` (empty when it is not there to ask)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError):
        return []
    try:
        writer.write(f"since {seq}\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
        return json.loads(raw) if raw.strip() else []
    except (OSError, TimeoutError, ValueError):
        return []
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
