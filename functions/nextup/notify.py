"""Sending a reminder: what it says, what a failed send means, and the e-mail path.

E-mail cannot be made exactly-once (SMTP has no idempotency key), so every mail carries
a Message-ID derived from the reminder: a resend after a crash is the same message and
mail clients show it once. Webhooks (`nextup.webhooks`) get the same id as an
`Idempotency-Key` header.

What a failed send means for the caller, whichever the channel:

- `PermanentFailure`: this recipient will never take this reminder (an invalid address or
  URL, a refused mailbox, a webhook's 4xx, a host that does not exist or is not public).
  Mark the reminder failed and go on.
- `RecipientUnavailable`: this one recipient failed for now (a webhook's 5xx, 408, 425 or
  429, its timeout or refused connection, a mailbox's 4xx, a DNS lookup that may pass
  later); a later retry of this reminder alone may pass, after `retry_after` seconds when
  the recipient said. Go on with the others.
- `nextup.errors.Unavailable` (503): the shared dependency itself is down, the SMTP server
  (refused connection, timeout, 421, disconnect, refused sender or login): every other
  mail would fail the same way, so the whole delivery is retried later. A webhook never
  raises it: every webhook is a server of its own.

A mail is composed so that nothing from a task can become a header or change the body's
type: every header value is ours or encoded by us (RFC 2047, never re-parsed for
encoded-words), the body is quoted-printable text/plain, and the envelope names exactly one
recipient, the validated address.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import charset as _charset
from email.header import Header
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, parseaddr
from urllib.parse import unquote, urlsplit

from nextup.dependencies import SMTP
from nextup.errors import Unavailable
from nextup.targets import mailbox


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
    # Titles go into a mail header and a line of text: no line breaks (U+2028 and U+0085
    # included) or control characters may reach either.
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


class RecipientFailure(Exception):
    """Sending to this one recipient failed; nobody else's reminders are affected."""


class PermanentFailure(RecipientFailure):
    """This recipient will never take the reminder: mark it failed, do not retry."""


class RecipientUnavailable(RecipientFailure):
    """This recipient failed for now; retrying this reminder alone later may pass.

    `retry_after` is the wait in seconds the recipient asked for (a webhook's
    `Retry-After`), or None when it did not say.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.sender_header, self.sender = _sender(config.sender)

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        if c.tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                c.host, c.port, timeout=c.timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        try:
            if c.starttls:
                client.starttls(context=ssl.create_default_context())
            if c.username:
                client.login(c.username, c.password or "")
        except BaseException:
            client.close()
            raise
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
        """Hand one mail to the SMTP server for `to` alone, or raise what went wrong:
        PermanentFailure, RecipientUnavailable or Unavailable (see the module's doc)."""
        try:
            recipient = mailbox(to)  # again: an address may come from the backend or the past
        except ValueError as exc:
            raise PermanentFailure(f"cannot mail this address: {exc}") from None
        mail = compose(self.sender_header, recipient, message)
        try:
            client = self._connect()
        except (smtplib.SMTPException, OSError) as exc:
            raise _server_down(exc) from exc
        try:
            # An explicit envelope: the one validated recipient, whatever the headers say.
            client.sendmail(self.sender, [recipient], mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise classify_smtp(exc, recipient) from exc
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()


def _sender(configured: str) -> tuple[str, str]:
    """(From header, envelope sender) from NEXTUP_SMTP_FROM (`Name <address>`)."""
    name, address = parseaddr(configured)
    try:
        mailbox(address)
    except ValueError as exc:
        raise ValueError(f"NEXTUP_SMTP_FROM needs a plain address: {exc}") from None
    # formataddr quotes the name, or encodes it (RFC 2047) when it is not ASCII.
    return formataddr((_one_line(name), address), charset="utf-8"), address


# UTF-8 text as quoted-printable: 7-bit on the wire, so no server needs 8BITMIME or
# SMTPUTF8, and readable in the raw.
_UTF8_QP = _charset.Charset("utf-8")
_UTF8_QP.body_encoding = _charset.QP


_FOLD_AT = 66  # "Subject: " and a plain value within 76 characters


def compose(sender: str, to: str, message: Message) -> bytes:
    """The mail as bytes, every header either ours or encoded by us.

    The compat32 classes store a header value as given and never parse it, unlike
    `EmailMessage`'s default policy: that one decodes RFC 2047 encoded-words in a value
    on assignment and writes the decoded text back out, so on Python 3.11 and 3.12 a
    title holding `=?utf-8?b?...?=` with an encoded CRLF became real headers and a body.
    Here the subject is one line of printable text; it is encoded by `Header` whenever it
    is not plain ASCII or holds `=?` (a receiver decodes an encoded-word once, so a
    `=?...?=` in a title shows as text), and the other values are plain ASCII we made.
    """
    mail = MIMEText(message.text(), "plain", _UTF8_QP)
    plain = {
        "From": sender,
        "To": to,
        "Message-ID": message.message_id,
        "Date": format_datetime(datetime.now(UTC)),
        "X-Nextup-Task": message.task_id,
    }
    for name, value in plain.items():
        if not (value.isascii() and value.isprintable()):
            raise ValueError(f"the {name} header must be printable ASCII")
        mail[name] = value
    subject = message.subject
    # A plain value is written as given, unfolded: one long word would make a line past
    # SMTP's 998 octets (a server refuses the mail), so a long subject is encoded too,
    # and `Header` splits it into encoded-words on lines of at most 76.
    plain_subject = subject.isascii() and "=?" not in subject and len(subject) <= _FOLD_AT
    mail["Subject"] = subject if plain_subject else Header(subject, "utf-8", header_name="Subject")
    # CRLF line ends, as SMTP requires: smtplib sends bytes as they are, and servers that
    # guard against SMTP smuggling refuse a bare LF.
    return mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))


def _code(exc: BaseException) -> int:
    return getattr(exc, "smtp_code", 0) or 0


def _server_down(exc: BaseException) -> Unavailable:
    code = _code(exc)
    return Unavailable(
        f"SMTP server unavailable: {type(exc).__name__}" + (f" {code}" if code else ""),
        field="smtp",
    )


def classify_smtp(exc: BaseException, recipient: str) -> Exception:
    """What an error from `sendmail` for one recipient means (see the module's doc).

    421 is the server closing the session, for everyone. The sender's refusal (MAIL FROM),
    a lost connection, a timeout, a refused login or a missing extension are the server's
    or its configuration's, for every mail alike. A reply to RCPT or DATA is about this
    mail: 4xx may pass later, 5xx never will, except 530 (authentication required), which
    says we are not logged in, for every recipient.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code = exc.recipients.get(recipient, (0, b""))[0]
        where = "mailbox"
    elif isinstance(exc, smtplib.SMTPDataError):
        code = exc.smtp_code
        where = "message"
    else:
        return _server_down(exc)
    if SMTP.transient_status(code) or not 400 <= code < 600:
        return _server_down(exc)
    if code < 500:
        return RecipientUnavailable(f"SMTP server deferred the {where}: {code}")
    return PermanentFailure(f"SMTP server refused the {where}: {code}")
