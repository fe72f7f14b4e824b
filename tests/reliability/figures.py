"""Figures of a reliability run: printed, and appended as JSON lines to the file named by
`NEXTUP_FIGURES` when it is set (docs/RELIABILITY.md is written from such a file)."""

from __future__ import annotations

import json
import os
import time
from typing import Any


def record(test: str, **figures: Any) -> None:
    line = {"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    text = json.dumps(line, default=str, sort_keys=False)
    print(f"FIGURES {text}")
    path = os.environ.get("NEXTUP_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text + "\n")
