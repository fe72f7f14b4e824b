"""Structured logs: one JSON object per line on stderr, one line per event handled."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

from nextup import jsontext

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, function: str) -> None:
        super().__init__()
        self.function = function

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "function": self.function,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return jsontext.dumps_text(line, default=str)


def configure(function: str, level: str = "INFO") -> logging.Logger:
    """The `nextup` logger, writing JSON lines; idempotent."""
    logger = logging.getLogger("nextup")
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(function))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())
    return logger
