"""Where a reminder may go (`nextup.targets`): one plain ASCII mailbox, or an http(s) URL
that every parser reads the same way. The same parsers check new tasks (`fields`) and
every send, so what is accepted can be sent and what cannot be sent is refused with a 4xx.
"""

from __future__ import annotations

import base64
import email.utils
import ipaddress
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nextup.fields import STORED, NotifySpec
from nextup.targets import MAX_EMAIL, mailbox, webhook_target

PROPERTY = settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def b64word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


# -- e-mail addresses ------------------------------------------------------------------------

GOOD_ADDRESSES = [
    "ann@example.com",
    "A.N.Other+tag@Sub.Example.co.uk",
    "o'brien@example.ie",
    "x_y-z@xn--bcher-kva.example",
    "!#$%&'*+/=^_`{|}~-@example.com",
    "a?b=c@example.com",  # `?` and `=` alone are atext; only `=?` is refused
    "u-0fa8919781@example.com",
    "l" * 64 + "@example.com",
    "a@" + ".".join(["d" * 63] * 3) + ".example",  # 209-character domain
    "a@b.c1",
]
BAD_ADDRESSES = {
    "non-ASCII local part (needs SMTPUTF8)": "ü@example.com",
    "non-ASCII domain": "a@exämple.com",
    "NUL": "a\x00@example.com",
    "NUL at the end": "a@example.com\x00",
    "CR LF": "a@example.com\r\nBcc: evil@example.com",
    "tab": "a\t@example.com",
    "U+2028": "a\u2028@example.com",
    "U+0085": "a\u0085@example.com",
    "encoded words": b64word("a") + "@" + b64word("x.com>, b@evil.com, c@evil") + ".com",
    "an encoded word in the local part": "=?utf-8?q?a?=@example.com",
    "=? inside": "a=?b@example.com",
    "quoted local part": '"a b"@example.com',
    "quotes": '"a"@example.com',
    "comment": "a(comment)@example.com",
    "display name": "Ann <a@example.com>",
    "angle brackets": "<a@example.com>",
    "domain literal": "a@[127.0.0.1]",
    "bare IP domain": "a@127.0.0.1",
    "one-label domain": "a@localhost",
    "two dots": "a..b@example.com",
    "leading dot": ".a@example.com",
    "trailing dot": "a.@example.com",
    "label with leading hyphen": "a@-example.com",
    "label with trailing hyphen": "a@example-.com",
    "empty label": "a@example..com",
    "trailing dot in domain": "a@example.com.",
    "underscore in domain": "a@ex_ample.com",
    "local part of 65": "l" * 65 + "@example.com",
    "label of 64": "a@" + "d" * 64 + ".com",
    "domain of 254": "a@" + ".".join(["d" * 63] * 4)[:250] + ".com",
    "address of 255": "l" * 64 + "@" + ".".join(["d" * 62] * 3) + ".example",
    "two addresses": "a@example.com,b@example.com",
    "semicolon": "a@example.com;b@example.com",
    "two @": "a@b@example.com",
    "space": "a b@example.com",
    "leading space": " a@example.com",
    "trailing space": "a@example.com ",
    "empty": "",
    "no local part": "@example.com",
    "no domain": "a@",
    "no @": "example.com",
    "backslash": "a\\b@example.com",
    "colon": "a:b@example.com",
}


@pytest.mark.parametrize("address", GOOD_ADDRESSES)
def test_plain_ascii_mailboxes_are_accepted_unchanged(address):
    assert len(address) <= MAX_EMAIL
    assert mailbox(address) == address
    assert NotifySpec(email=address).email == address


@pytest.mark.parametrize("address", BAD_ADDRESSES.values(), ids=BAD_ADDRESSES.keys())
def test_anything_but_one_plain_ascii_mailbox_is_refused(address):
    with pytest.raises(ValueError):
        mailbox(address)
    with pytest.raises(ValidationError) as caught:
        NotifySpec(email=address)
    assert caught.value.errors()[0]["loc"] == ("email",)


def _readings(address: str) -> list[list[str]]:
    """The recipients each of the standard library's readers finds in a To header."""
    modern = EmailMessage()  # the default policy: decodes RFC 2047, parses groups
    modern["To"] = address
    return [
        [addr for _, addr in email.utils.getaddresses([address])],
        [email.utils.parseaddr(address)[1]],
        [a.addr_spec for a in modern["To"].addresses],
    ]


ADDRESSISH = st.text(
    alphabet=st.sampled_from([*"aZ09.@-_=?!#'\"(),;:<>[]\\ +/\t\r\n\x00", "ü", "\u2028"])
    | st.characters(),
    max_size=60,
)
ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
VALIDISH = st.from_regex(
    rf"[{ATEXT}]{{1,12}}(\.[{ATEXT}]{{1,12}}){{0,2}}@[a-z0-9]{{1,10}}(\.[a-z0-9-]{{1,10}}){{0,2}}"
    r"\.[a-z]{2,6}",
    fullmatch=True,
)


@PROPERTY
@given(ADDRESSISH | VALIDISH)
@example(BAD_ADDRESSES["encoded words"])
@example("=?utf-8?q?a?=@example.com")
def test_an_accepted_address_is_one_recipient_to_every_reader(text):
    """Whatever is accepted is read as exactly itself, one mailbox, by every reader in
    the standard library, whichever Python (the default policy's reading of encoded-words
    differs between 3.11, 3.12 and 3.13)."""
    try:
        address = mailbox(text)
    except ValueError:
        return
    assert address.isascii() and address.isprintable() and len(address) <= MAX_EMAIL
    assert "=?" not in address
    assert _readings(address) == [[address]] * 3


# -- webhook URLs ----------------------------------------------------------------------------

GOOD_URLS = {
    "https://hooks.example.com/r/abc?token=x": "https://hooks.example.com/r/abc?token=x",
    "HTTP://Example.COM": "http://example.com/",
    "http://localhost/hook": "http://localhost/hook",  # one label: allow-listed names
    "http://example.com:8080/x#frag": "http://example.com:8080/x",
    "https://example.com:443/": "https://example.com:443/",
    "http://1.1.1.1/hook": "http://1.1.1.1/hook",
    "http://[2606:4700::1111]:8443/h": "http://[2606:4700::1111]:8443/h",
    "http://[::FFFF:1.2.3.4]/": "http://[::ffff:1.2.3.4]/",
    "http://bücher.example/ä?q=ü": "http://xn--bcher-kva.example/%C3%A4?q=%C3%BC",
    "http://a-b.c-d.example/": "http://a-b.c-d.example/",
    "http://" + "l" * 63 + ".example/": "http://" + "l" * 63 + ".example/",
    "http://example.com:65535": "http://example.com:65535/",
    "http://example.com:1/": "http://example.com:1/",
}
BAD_URLS = {
    "port too big": "http://example.com:99999/",
    "port 65536": "http://example.com:65536/",
    "port letters": "http://example.com:abc/",
    "port with sign": "http://example.com:+80/",
    "port 0": "http://example.com:0/",
    "empty port": "http://example.com:/",
    "full-width port digits": "http://example.com:\uff18\uff10/",
    "Arabic-Indic port digits": "http://example.com:٨٠/",
    "broken IPv6 literal": "http://[::1/",
    "IPv6 literal with a zone id": "http://[fe80::1%25eth0]/",
    "not an IPv6 address": "http://[1.2.3.4]/",
    "empty label": "http://a..b/",
    "trailing dot": "http://example.com./",
    "non-ASCII digits": "http://①.1.1.1/",
    "enclosed letters": "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/hook",
    "ideographic full stop": "http://a。b/",
    "userinfo": "http://user:secret@example.com/",
    "bare @": "http://@example.com/",
    "backslash userinfo": "http://1.1.1.1\\@127.0.0.1/hook",
    "encoded slash userinfo": "http://1.1.1.1%2f@127.0.0.1/hook",
    "percent in the host": "http://exa%6dple.com/",
    "label of 64": "http://" + "l" * 64 + ".example/",
    "host of 254": "http://" + ".".join(["l" * 63] * 4)[:250] + ".com/",
    "underscore": "http://a_b.example/",
    "short IPv4": "http://127.1/",
    "decimal IPv4": "http://2130706433/",
    "hex IPv4": "http://0x7f000001/",
    "octal IPv4": "http://010.0.0.1/",
    "numeric last label": "http://example.123/",
    "IPv4 octet too big": "http://1.2.3.256/",
    "ftp": "ftp://example.com/",
    "no host": "http:///x",
    "no slashes": "http:example.com",
    "one slash": "http:/example.com",
    "space": "http://exa mple.com/",
    "space in path": "http://example.com/a b",
    "tab": "http://example.com/\t",
    "CR LF": "http://example.com/\r\nHost: evil",
    "NUL": "http://example.com/\x00",
    "U+2028": "http://example.com/\u2028",
    "too long": "http://example.com/" + "a" * 2100,
    "too long once encoded": "http://example.com/" + "ä" * 700,
    "two ports": "http://example.com:80:80/",
    "scheme relative": "//example.com/",
}


@pytest.mark.parametrize("url, canonical", GOOD_URLS.items())
def test_usable_urls_are_accepted_in_their_canonical_ascii_form(url, canonical):
    assert webhook_target(url).url == canonical
    assert NotifySpec(webhook=url).webhook == canonical
    assert webhook_target(canonical).url == canonical


@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_urls_a_sender_could_not_use_are_refused(url):
    with pytest.raises(ValueError) as caught:
        webhook_target(url)
    assert "secret" not in str(caught.value), "the URL's credentials are never echoed"
    with pytest.raises(ValidationError) as refused:
        NotifySpec(webhook=url)
    assert refused.value.errors()[0]["loc"] == ("webhook",)


def test_a_stored_value_reads_back_as_written():
    """What the store holds was checked when written: rules tightened since must not make
    it unreadable (one old task would stop every sweep); it fails when sent instead."""
    stored = {"email": "ü@example.com", "webhook": "http://example.com:99999/"}
    spec = NotifySpec.model_validate(stored, context=STORED)
    assert (spec.email, spec.webhook) == (stored["email"], stored["webhook"])
    with pytest.raises(ValidationError):
        NotifySpec.model_validate(stored)


URL_PIECES = st.tuples(
    st.sampled_from(["http", "https", "HTTPS", "ftp", "http:", ""]),
    st.sampled_from(["://", ":/", "//", ":///"]),
    st.sampled_from(["", "", "u:p@", "@", "a\\@", "u@"]),
    st.one_of(
        st.sampled_from(
            [
                "example.com",
                "localhost",
                "127.0.0.1",
                "127.1",
                "0x7f.1",
                "[::1]",
                "[::ffff:127.0.0.1]",
                "[fe80::1%25eth0]",
                "[v1.x]",
                "a..b",
                "xn--bcher-kva.example",
                "bücher.example",
                "①.1.1.1",
                "ß.example",
                "",
            ]
        ),
        st.from_regex(r"[a-z0-9-]{1,8}(\.[a-z0-9-]{1,8}){0,3}", fullmatch=True),
        st.text(max_size=12),
    ),
    st.sampled_from(
        ["", "", ":", ":80", ":0", ":65535", ":65536", ":+1", ":\uff18\uff10", ":1.5", ":-1"]
    ),
    st.text(max_size=30),
)


@PROPERTY
@given(URL_PIECES.map("".join) | st.text(max_size=80))
@example("http://[::1]:80/")
@example("http://example.com?x")
@example("http://\u00c0")  # an IDNA name: found by this property in a `make test` run
def test_an_accepted_url_reads_the_same_to_every_parser(text):
    """The parser only ever raises ValueError, and what it accepts is ASCII, canonical
    (parsing it again changes nothing), and read with the same scheme, host and port by
    urllib and by httpx, which makes the request."""
    try:
        target = webhook_target(text)
    except ValueError:
        return
    url = target.url
    assert url.isascii() and url.isprintable() and len(url) <= 2048
    assert webhook_target(url) == target
    assert target.scheme in ("http", "https") and 1 <= target.port <= 65535
    parts, request = urlsplit(url), httpx.URL(url)
    # `httpx.URL.host` decodes an IDNA name (xn--0ca reads back as à); what it sends is
    # the raw host, the ASCII form urllib reads and the target stores.
    assert parts.hostname == request.raw_host.decode("ascii") == target.host
    assert (parts.port or target.port) == (request.port or target.port) == target.port
    assert not parts.username and not request.userinfo
    if target.ip is None:
        with pytest.raises(ValueError):
            ipaddress.ip_address(target.host)
    # Pinned to an address, httpx still reads the same port and path.
    pinned = httpx.URL(target.at(ipaddress.ip_address("192.0.2.1")))
    assert pinned.host == "192.0.2.1"
    assert (pinned.port or target.port) == target.port and pinned.raw_path == request.raw_path
