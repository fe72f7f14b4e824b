"""A task's title and address cannot change the mail beyond its subject and text.

The outside review's case: a title holding an RFC 2047 encoded-word whose decoded text is
`CRLF Reply-To: ... CRLF Content-Type: text/html CRLF CRLF <html>` became a real Reply-To
header and an HTML body on Python 3.11 and 3.12, because `EmailMessage` decoded the
encoded-word on assignment and wrote the decoded text back out; and an address made of
encoded-words passed validation and put three recipients in the SMTP envelope.

Every check here is on the bytes a real SMTP server (aiosmtpd) received: they parse into
exactly the headers nextup sets, each once, a text/plain body, and an envelope with one
recipient, the validated address. Property-based over arbitrary titles (encoded-words,
CR/LF, NUL, U+2028, U+0085, lone surrogates, very long words); run on every supported
Python, since each decodes headers differently.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.header import decode_header, make_header

import httpx
import pytest
from figures import record
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from relstack import FunctionSet

from harness import MailServer, cloud_event
from nextup.notify import Mailer, Message, PermanentFailure, SmtpConfig
from nextup.reminders import ReminderStatus
from nextup_dev.stores import SQLITE

pytestmark = pytest.mark.fast

SENDER = "nextup <reminders@nextup.example>"
HEADERS = {
    "from",
    "to",
    "subject",
    "message-id",
    "date",
    "x-nextup-task",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}


def b64word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def qword(text: str) -> str:
    encoded = "".join(f"={b:02X}" if not chr(b).isalnum() else chr(b) for b in text.encode())
    return f"=?utf-8?q?{encoded}?="


INJECTED = "\r\nReply-To: evil@x\r\nContent-Type: text/html\r\n\r\n<html>"
REPORTED_TITLE = f"Pay rent {b64word(INJECTED)}"


@pytest.fixture(scope="module")
def mail() -> Iterator[MailServer]:
    server = MailServer().start()
    yield server
    server.stop()


def mailer(server: MailServer, sender: str = SENDER) -> Mailer:
    return Mailer(
        SmtpConfig(
            host="127.0.0.1",
            port=server.port,
            username=None,
            password=None,
            tls=False,
            starttls=False,
            sender=sender,
            timeout=5.0,
        )
    )


def message(title: str, task_id: str = "t-1") -> Message:
    return Message(
        user_id="u-1",
        task_id=task_id,
        title=title,
        due_at="2026-11-24T09:00:00+01:00",
        remind_at="2026-11-24T08:45:00+01:00",
        message_id=f"<{uuid.uuid4().hex}@nextup.example>",
    )


def received_as_sent(server: MailServer, to: str, sent: Message) -> None:
    """The last mail the server received is exactly what nextup composed, nothing more."""
    delivery = server.received_raw()[-1]
    assert delivery.rcpt_tos == (to,), "one recipient, the validated address"
    assert delivery.mail_from == "reminders@nextup.example"
    raw = delivery.content
    assert raw.isascii(), "7-bit: no server needs 8BITMIME or SMTPUTF8"
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b""), (
        "CRLF line ends only: a bare CR or LF is how SMTP smuggling starts"
    )
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    names = [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line[:1] not in " \t"]
    assert Counter(names) == Counter(HEADERS), head
    for parsing in (policy.default, policy.compat32):
        mail = message_from_bytes(raw, policy=parsing)
        assert {name.lower() for name in mail} == HEADERS and len(mail.keys()) == 9
        assert mail.get_content_type() == "text/plain" and not mail.is_multipart()
        assert mail.get_content_charset() == "utf-8"
        assert mail["Content-Transfer-Encoding"] == "quoted-printable"
        assert mail["To"] == to and mail["X-Nextup-Task"] == sent.task_id
        assert mail["Message-ID"] == sent.message_id
        body = mail.get_payload(decode=True).decode("utf-8").replace("\r\n", "\n")
        assert body == sent.text()
    modern = message_from_bytes(raw, policy=policy.default)
    assert str(modern["Subject"]) == sent.subject
    assert [a.addr_spec for a in modern["To"].addresses] == [to]
    assert [a.addr_spec for a in modern["From"].addresses] == ["reminders@nextup.example"]
    # And decoded once by the older API, from the raw header: the same text.
    raw_subject = message_from_bytes(raw, policy=policy.compat32)["Subject"].replace("\r\n", "")
    assert str(make_header(decode_header(raw_subject))) == sent.subject


def test_the_reported_title_stays_inside_the_subject(mail):
    sent = message(REPORTED_TITLE)
    mailer(mail).send("ann@example.com", sent)
    received_as_sent(mail, "ann@example.com", sent)
    received = message_from_bytes(mail.received_raw()[-1].content, policy=policy.default)
    assert received["Reply-To"] is None
    # The encoded-word shows as the text it was, never decoded into a header.
    assert str(received["Subject"]) == f"Reminder: {REPORTED_TITLE}"


def test_an_address_of_encoded_words_is_refused_before_any_smtp(mail):
    before = len(mail.received_raw())
    address = b64word("a") + "@" + b64word("x.com>, b@evil.com, c@evil") + ".com"
    for to in (address, "ü@example.com", "a\x00@example.com", "a@example.com, b@example.com"):
        with pytest.raises(PermanentFailure):
            mailer(mail).send(to, message("x"))
    assert len(mail.received_raw()) == before


def test_a_sender_name_is_encoded_and_the_envelope_is_the_address(mail):
    sent = message("Übung")
    mailer(mail, sender="Nächste Erinnerung =?x?= <reminders@nextup.example>").send(
        "ann@example.com", sent
    )
    received = message_from_bytes(mail.received_raw()[-1].content, policy=policy.default)
    assert received["From"].addresses[0].display_name == "Nächste Erinnerung =?x?="
    assert mail.received_raw()[-1].mail_from == "reminders@nextup.example"
    with pytest.raises(ValueError, match="NEXTUP_SMTP_FROM"):
        mailer(mail, sender="nextup <=?utf-8?b?YQ==?=@x.example>")


FRAGMENTS = st.sampled_from(
    [
        "\r\n",
        "\n",
        "\r",
        "\x00",
        "\u2028",
        "\u2029",
        "\u0085",
        "\x0b",
        "\x1b",
        "\t",
        " ",
        "=?",
        "?=",
        "=?utf-8?b?",
        "=?utf-8?q?",
        "=?iso-8859-1?q?=E9?=",
        "Reply-To: evil@x",
        "Content-Type: text/html",
        "Bcc: mallory@example.com",
        "<html>",
        "\r\n\r\n",
        "ü",
        "😀",
        "\ud800",
        "x" * 300,
        "-- ",
        ".",
        "\r\n.\r\n",
    ]
)
ENCODED = st.text(max_size=40).flatmap(lambda t: st.sampled_from([b64word(t), qword(t)]))
TITLES = (
    st.lists(FRAGMENTS | ENCODED | st.text(max_size=20), max_size=12).map("".join)
    | st.text(max_size=500)
    | st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=500)
)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(title=TITLES)
@example(title=REPORTED_TITLE)
@example(title=f"{qword(INJECTED)} {b64word('Bcc: x@y.z')}")
@example(title="a" * 500)
@example(title="x" * 1600)  # one word past SMTP's 998-octet line: found on Python 3.12
@example(title="\r\n" * 10)
def test_any_title_leaves_the_mail_as_composed(mail, title):
    sent = message(title)
    mailer(mail).send("ann@example.com", sent)
    assert "\n" not in sent.subject and "\r" not in sent.subject and sent.subject.isprintable()
    received_as_sent(mail, "ann@example.com", sent)


# -- the whole path: an event's title through schedule-next and send-reminder ---------------


stack = FunctionSet.fixture(
    "stack",
    "mail-injection",
    (SQLITE,),
    names=("schedule-next", "send-reminder"),
    per_function={"send-reminder": {"K_SINK": ""}},
    in_process=True,
)


def create(fs: FunctionSet, data: dict) -> httpx.Response:
    headers, body = cloud_event("todo.task.created", data, id_=uuid.uuid4().hex)
    return fs.caller.post(fs.url("schedule-next"), headers=headers, content=body)


def test_an_event_with_the_reported_title_mails_one_plain_text_reminder(stack):
    user = f"mi-{uuid.uuid4().hex[:6]}"
    task = f"{user}.t"
    data = {
        "user_id": user,
        "task_id": task,
        "title": REPORTED_TITLE,
        "due_at": "2026-11-24T09:00:00Z",
        "reminder": {"before": "PT0M"},
        "notify": {"email": f"{user}@example.com"},
    }
    assert create(stack, data).status_code == 202
    headers, body = cloud_event(
        "todo.reminder.due", {"user_id": user, "task_id": task}, id_=uuid.uuid4().hex
    )
    swept = stack.caller.post(stack.url("send-reminder"), headers=headers, content=body)
    assert swept.status_code == 200, swept.text
    reminder = stack.store.get_reminder(user, task)
    assert reminder.status is ReminderStatus.SENT
    [delivery] = [d for d in stack.mail.received_raw() if f"{user}@example.com" in d.rcpt_tos]
    assert delivery.rcpt_tos == (f"{user}@example.com",)
    received = message_from_bytes(delivery.content, policy=policy.default)
    assert received["Reply-To"] is None and received.get_content_type() == "text/plain"
    assert str(received["Subject"]) == f"Reminder: {REPORTED_TITLE}"
    assert "<html>" not in received.get_content()


def test_addresses_the_mail_path_cannot_deliver_are_refused_at_creation(stack):
    user = f"mi-{uuid.uuid4().hex[:6]}"
    before = stack.dump()
    refused = {
        "encoded words": b64word("a") + "@" + b64word("x.com>, b@evil.com, c@evil") + ".com",
        "needs SMTPUTF8": "ü@example.com",
        "NUL": "a\x00@example.com",
        "control character": "a\x1b@example.com",
        "quoted": '"a b"@example.com',
        "comment": "a(b)@example.com",
    }
    for name, address in refused.items():
        data = {"user_id": user, "task_id": f"{user}.x", "title": "x", "notify": {"email": address}}
        response = create(stack, data)
        assert response.status_code == 400, (name, response.text)
        assert response.json()["field"] == "data.notify.email", name
    assert stack.dump() == before
    record("mail injection", refused_addresses=len(refused))
