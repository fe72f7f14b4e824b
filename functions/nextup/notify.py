"""Sending a reminder: e-mail over SMTP, or a JSON POST to a webhook.

E-mail cannot be made exactly-once (SMTP has no idempotency key), so every mail carries
a Message-ID derived from the reminder: a resend after a crash is the same message and
mail clients show it once. Webhooks get the same id as an `Idempotency-Key` header.

Webhook targets come from event data, so an event could try to make a function probe
the cluster or a cloud metadata endpoint: addresses that are not public are refused
unless allow-listed (`NEXTUP_WEBHOOK_ALLOW`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import unquote, urlsplit

import httpx

from nextup.errors import BadRequest, Unavailable


@dataclass(frozen=True)
class Message:
    """What a reminder says, whichever way it travels."""

    user_id: str
    task_id: str
    title: str
    due_at: str | None
    remind_at: str
    message_id: str

    @property
    def subject(self) -> str:
        return f"Reminder: {_one_line(self.title) or self.task_id}"

    def text(self) -> str:
        due = f" is due at {self.due_at}" if self.due_at else " needs your attention"
        return f"Task '{_one_line(self.title) or self.task_id}'{due}.\n\n-- nextup\n"

    def payload(self) -> dict:
        return {
            "type": "todo.reminder",
            "user_id": self.user_id,
            "task_id": self.task_id,
            "title": self.title,
            "due_at": self.due_at,
            "remind_at": self.remind_at,
            "message_id": self.message_id,
        }


def _one_line(text: str) -> str:
    # Titles go into a mail header: no line breaks or control characters may reach it.
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


class PermanentFailure(Exception):
    """The target refused the reminder for good (e.g. a 4xx webhook answer, a bad mailbox)."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)  # never in a log line or an error
    tls: bool  # implicit TLS (smtps://)
    starttls: bool
    sender: str
    timeout: float = 10.0

    @classmethod
    def from_url(cls, url: str, *, sender: str, password: str | None = None) -> SmtpConfig:
        """`smtp://[user[:pass]@]host[:port][?starttls=true]` or `smtps://...`."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            # Not the URL itself: it may carry the password.
            raise ValueError(
                "NEXTUP_SMTP_URL must be smtp://host:port or smtps://host:port, "
                f"not a {parts.scheme[:16]!r} URL" + ("" if parts.hostname else " without a host")
            )
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            username=unquote(parts.username) if parts.username else None,
            password=password or (unquote(parts.password) if parts.password else None),
            tls=implicit,
            starttls="starttls=true" in parts.query.lower(),
            sender=sender,
        )


class Mailer:
    """Blocking SMTP client; the async callers run it in a thread."""

    # What may pass if we try again later: the server is away, busy or throttling us.
    TRANSIENT = (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        if c.tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                c.host, c.port, timeout=c.timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
            if c.starttls:
                client.starttls(context=ssl.create_default_context())
        if c.username:
            client.login(c.username, c.password or "")
        return client

    def ping(self) -> None:
        client = self._connect()
        try:
            code, _ = client.noop()
            if code != 250:
                raise OSError(f"SMTP NOOP answered {code}")
        finally:
            client.quit()

    def send(self, to: str, message: Message) -> None:
        mail = EmailMessage()
        mail["From"] = self.config.sender
        mail["To"] = to
        mail["Subject"] = message.subject
        mail["Message-ID"] = message.message_id
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["X-Nextup-Task"] = message.task_id
        mail.set_content(message.text())
        client = self._connect()
        try:
            client.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure(f"recipient refused: {to}") from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise OSError(f"SMTP temporary failure {exc.smtp_code}") from exc
            raise PermanentFailure(f"SMTP refused the message: {exc.smtp_code}") from exc
        finally:
            with contextlib.suppress(smtplib.SMTPException):
                client.quit()


@dataclass(frozen=True)
class WebhookPolicy:
    """Which webhook hosts may be private: exact host names or CIDR blocks."""

    allow: tuple[str, ...] = ()

    def _allowed(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        for entry in self.allow:
            if entry == host:
                return True
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False

    async def check(self, url: str) -> None:
        """Refuse a target that resolves to a loopback, link-local, private or reserved address."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise BadRequest("webhook must be an http(s) URL", field="notify.webhook")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or 443, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise PermanentFailure(f"webhook host {host!r} does not resolve") from exc
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not _public(address) and not self._allowed(host, address):
                raise PermanentFailure(
                    f"webhook host {host!r} resolves to a non-public address; "
                    "allow it with NEXTUP_WEBHOOK_ALLOW"
                )


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A unicast address on the public internet (`is_global` alone lets multicast by)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


async def post_webhook(
    client: httpx.AsyncClient, url: str, message: Message, *, timeout: float = 10.0
) -> None:
    """POST the reminder; 2xx is delivered, 408/429/5xx may pass, other 4xx never will."""
    try:
        response = await client.post(
            url,
            json=message.payload(),
            headers={"Idempotency-Key": message.message_id},
            timeout=timeout,
        )
    except httpx.TransportError as exc:
        raise Unavailable(f"webhook unreachable: {type(exc).__name__}", field="webhook") from exc
    if response.is_success:
        return
    if response.status_code in (408, 425, 429) or response.status_code >= 500:
        raise Unavailable(f"webhook answered {response.status_code}", field="webhook")
    raise PermanentFailure(f"webhook answered {response.status_code}")
