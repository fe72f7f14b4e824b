"""How a function is served, everywhere: `python -m functions_framework` on a loopback port,
as in production. `nextup dev` (fleet), the tests and the benchmarks all launch through
`function_argv`; `FunctionProcess` is one such function started and stopped blocking.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nextup
from nextup_dev.ports import LOOPBACK, free_port
from nextup_dev.processes import Supervised, http_answers

# Every function from the installed package (NEXTUP_FUNCTION picks which): no checkout needed.
FUNCTION_SOURCE = Path(nextup.__file__).resolve().parent / "serve.py"
LIVENESS = "/health/liveness"


def function_argv(
    port: int, source: Path = FUNCTION_SOURCE, target: str = "handle", host: str = LOOPBACK
) -> list[str]:
    """functions-framework serving `target` of `source` on host:port."""
    return [
        sys.executable,
        "-m",
        "functions_framework",
        "--source",
        str(source),
        "--target",
        target,
        "--host",
        host,
        "--port",
        str(port),
    ]


class FunctionProcess(Supervised):
    """One function in its own functions-framework process, ready once its liveness probe
    answers 200. `source` defaults to the installed package's entry point, which serves
    the function `NEXTUP_FUNCTION` names (set from `name` unless `env` has it)."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        port: int | None = None,
        *,
        source: Path = FUNCTION_SOURCE,
        cwd: Path | str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        env = {"NEXTUP_FUNCTION": name, **env}
        super().__init__(
            name,
            function_argv(self.port, source),
            env=env,
            cwd=cwd,
            start_timeout=start_timeout,
        )

    def ready(self) -> bool:
        return http_answers(self.url + LIVENESS, ok_only=True)
