"""SMTP servers on loopback (aiosmtpd): the one implementation behind `nextup dev`'s mailbox,
the tests' mail servers and the benchmarks' sink.

`SmtpServer` accepts every message and keeps none; subclasses say what to do with a
message (`handle_DATA`) or a command. `RecordingSmtp` keeps what it received and can be
scripted to refuse or hang up, like the servers reminders meet in the wild.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from nextup_dev.ports import LOOPBACK, free_port


class SmtpServer:
    """aiosmtpd on `port` of loopback (a free one by default); `controller` takes
    aiosmtpd's own options (e.g. an authenticator)."""

    def __init__(self, port: int | None = None, **controller: Any) -> None:
        self.port = port or 0
        self._options = controller
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{LOOPBACK}:{self.port}"

    def start(self, port: int | None = None) -> Any:
        self.port = port or self.port or free_port()
        self._controller = Controller(self, hostname=LOOPBACK, port=self.port, **self._options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Delivery:
    """One mail as the SMTP server received it: the envelope and the raw bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes


# What a scripted RecordingSmtp does instead of accepting: an SMTP reply line, or HANG_UP.
HANG_UP = "hang up"
Script = Callable[[str, str], str | None]  # (verb: MAIL, RCPT or DATA, address) -> reply


class RecordingSmtp(SmtpServer):
    """Keeps every message it receives.

    `script(verb, address)` may answer MAIL, RCPT (address: the recipient) or DATA
    (address: the first recipient) with its own reply, e.g. "450 4.2.1 try later", or
    HANG_UP to drop the connection there; None accepts. Without SMTPUTF8 support,
    like many servers.
    """

    def __init__(self, port: int | None = None, *, script: Script | None = None) -> None:
        super().__init__(port or free_port())
        self.messages: list[Message] = []
        self.deliveries: list[Delivery] = []
        self.script = script or (lambda verb, address: None)
        self._lock = threading.Lock()

    def _scripted(self, server: Any, verb: str, address: str) -> str | None:
        reply = self.script(verb, address)
        if reply == HANG_UP:
            server.transport.close()
            return "421 4.3.0 closing"  # never arrives: the connection is gone
        return reply

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self._scripted(server, "MAIL", address)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self._scripted(server, "RCPT", address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self._scripted(server, "DATA", envelope.rcpt_tos[0] if envelope.rcpt_tos else "")
        if reply:
            return reply
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))
            self.deliveries.append(
                Delivery(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content)
            )
        return "250 OK"

    def received(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def received_raw(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)
