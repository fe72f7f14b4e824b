"""Scale-to-zero, as Knative Serving's activator does it: while a function has no process,
requests for it go to the activator, which starts the function, holds the request until
it is ready, and forwards it. An idle function is stopped again.

Each function is reached at `http://127.0.0.1:<activator port>/<function>/`; the
dispatcher's subscriber URLs point here when `nextup dev --scale-to-zero` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nextup_dev.fleet import FunctionInstance

# Hop-by-hop headers, and those httpx recomputes for the forwarded request and answer.
_DROP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class Activator:
    def __init__(self, functions: dict[str, FunctionInstance], idle: float) -> None:
        self.functions = functions
        self.idle = idle
        self.client = httpx.AsyncClient(timeout=None)
        self.app = Starlette(
            routes=[
                Route("/{name}", self.forward, methods=["GET", "POST", "OPTIONS"]),
                Route("/{name}/{path:path}", self.forward, methods=["GET", "POST", "OPTIONS"]),
            ]
        )
        self._reaper: asyncio.Task[None] | None = None

    def url(self, port: int, name: str) -> str:
        return f"http://127.0.0.1:{port}/{name}/"

    async def forward(self, request: Request) -> Response:
        name = request.path_params["name"]
        function = self.functions.get(name)
        if function is None:
            return JSONResponse({"error": f"no function {name}", "field": None}, status_code=404)
        function.in_flight += 1
        try:
            try:
                await function.activate()
            except Exception as exc:
                # The dispatcher retries a 503: a function that failed to start gets another go.
                return JSONResponse(
                    {"error": f"{name} did not start: {str(exc)[:300]}", "field": None},
                    status_code=503,
                )
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
            path = request.path_params.get("path", "")
            answer = await self.client.request(
                request.method,
                f"{function.url}/{path}",
                headers=headers,
                content=await request.body(),
            )
        except httpx.TransportError as exc:
            return JSONResponse(
                {"error": f"{name} unreachable: {type(exc).__name__}", "field": None},
                status_code=502,
            )
        finally:
            function.in_flight -= 1
            function.last_used = time.monotonic()
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    async def reap(self) -> None:
        """Stop every function that has been idle for `idle` seconds, forever."""
        while True:
            await asyncio.sleep(min(1.0, self.idle / 4))
            for function in self.functions.values():
                await function.scale_down_if_idle(self.idle)

    def start(self) -> None:
        self._reaper = asyncio.create_task(self.reap(), name="activator-reaper")

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.client.aclose()
