"""The dispatcher's HTTP client: aiohttp, behind the few calls a delivery needs.

Profiled per POST of a delivery, httpx cost ~2.4 ms of CPU (httpcore's pool scan, anyio
around every socket call) and aiohttp ~0.9 ms; at several deliveries per completion that
was the dispatcher's largest cost. What the dispatcher sees is one call, `post`, with one
deadline for the whole exchange and three kinds of failure: `Timeout`, `BadRequest` (the
request can never be sent: retrying cannot help) and `HttpError` (nothing usable came back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

MAX_BODY = 16 * 1024 * 1024  # an answer larger than this is not a reply this broker takes
# An idle keep-alive connection is not reused after this many seconds. functions-framework
# serves through gunicorn, whose keep-alive (2 s by default) its uvicorn worker adopts: a
# connection idle longer may be closing at the very moment a delivery is written to it,
# and that delivery would count as a failed attempt.
KEEPALIVE = 1.0
# Framing headers are aiohttp's to set; a delivery's own would contradict them.
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class HttpError(Exception):
    """No usable answer to a request."""


class Timeout(HttpError):
    """The exchange did not finish within its deadline."""


class BadRequest(HttpError):
    """The request cannot be sent (a header with a line break, not an http(s) URL)."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes


class HttpClient:
    """One aiohttp session, created on first use inside the running loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            # Only what the event carries: no User-Agent, Accept or guessed Content-Type.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        return self._session

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> Response:
        """POST `body` to `url`; the answer, whatever its status. Raises an HttpError."""
        import aiohttp

        session = self._session or self._open()
        sent = _headers(headers)
        try:
            async with session.post(
                url, data=body, headers=sent, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as answer:
                if (answer.content_length or 0) > MAX_BODY:
                    raise HttpError(f"answer of {answer.content_length} bytes is too large")
                data = await answer.content.read(MAX_BODY + 1)
                while len(data) <= MAX_BODY and (more := await answer.content.read(MAX_BODY)):
                    data += more
                if len(data) > MAX_BODY:
                    raise HttpError("answer too large")
                found: dict[str, str] = {}
                for name, value in answer.headers.items():
                    name = name.lower()
                    found[name] = f"{found[name]}, {value}" if name in found else value
                return Response(answer.status, found, data)
        except TimeoutError:
            raise Timeout(f"no answer within {timeout:g} s") from None
        except aiohttp.InvalidURL as exc:
            raise BadRequest(f"not a URL aiohttp can send to: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # e.g. a URL scheme aiohttp has no connector for
            raise BadRequest(str(exc)) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            # Let the connector's transports finish closing before the loop goes away.
            await asyncio.sleep(0)


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    sent = {}
    for name, value in headers.items():
        if name.lower() in _FRAMING:
            continue
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise BadRequest(f"header {name[:40]!r} cannot be sent: line break or colon")
        sent[name] = value
    return sent
