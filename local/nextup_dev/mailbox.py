"""A local SMTP server that keeps every message it receives as an `.eml` file, so a person
can read what the functions sent (any mail client opens them; so does `cat`).

Files are written whole under a temporary name and then renamed: a reader never sees half
a message. Names sort by arrival.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nextup_dev.smtp import SmtpServer

_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]+")


def mail_filename(received: float, sequence: int, recipient: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(received))
    who = _UNSAFE.sub("_", recipient)[:60] or "unknown"
    return f"{stamp}-{sequence:05d}-{who}.eml"


class Mailbox(SmtpServer):
    def __init__(self, directory: Path, on_mail: Callable[[Path], None] | None = None) -> None:
        super().__init__()
        self.directory = directory
        self.on_mail = on_mail
        self._sequence = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        recipients = ",".join(envelope.rcpt_tos)
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        header = f"X-Nextup-Envelope-To: {recipients}\r\n".encode()
        name = mail_filename(time.time(), next(self._sequence), envelope.rcpt_tos[0])
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f".{name}.part"
        partial.write_bytes(header + content)
        final = self.directory / name
        partial.rename(final)
        if self.on_mail is not None:
            self.on_mail(final)
        return "250 OK: kept in " + str(final)

    def start(self, port: int | None = None) -> Mailbox:
        self.directory.mkdir(parents=True, exist_ok=True)
        return super().start(port)
