"""Where a reminder may go: the grammar of an e-mail address and of a webhook URL.

One parser each, used when a task is created (`fields.Email`, `fields.WebhookUrl`) and
again when a reminder is sent (`notify`, `webhooks`), so the two can never disagree: what
is accepted here can be sent, and what was stored before these rules tightened fails only
its own reminder.

Both grammars are deliberately narrower than the RFCs. An address is one plain ASCII
mailbox: nothing a mail library could read as a display name, a group, a comment, a
quoted string, an RFC 2047 encoded-word or a second recipient, and nothing that needs
SMTPUTF8. A webhook URL is http(s) to an ASCII host name or an IP literal written the one
canonical way, because every other spelling (`127.1`, `0x7f000001`, `①.1.1.1`, a zone id)
is read differently by different parsers and resolvers.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_LOCAL = 64
MAX_DOMAIN = 253
MAX_EMAIL = 254
MAX_URL = 2048
MAX_LABEL = 63

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 5322 atext, ASCII only; a local part is a dot-atom of it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
# RFC 1123 host name labels: letters, digits, inner hyphens.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)


def mailbox(value: str) -> str:
    """`value` if it is one plain ASCII mailbox (`local@domain`), else ValueError.

    local:  a dot-atom of RFC 5322 atext, at most 64 characters, without `=?`
    domain: two or more host name labels (letters, digits, inner hyphens, 1-63 each),
            at most 253 characters, the last one with a letter (no bare IP addresses)
    whole:  at most 254 characters
    """
    if not isinstance(value, str) or not value.isascii() or not value.isprintable():
        raise ValueError("an e-mail address must be printable ASCII")
    if len(value) > MAX_EMAIL:
        raise ValueError(f"an e-mail address has at most {MAX_EMAIL} characters")
    local, at, domain = value.rpartition("@")
    if not at or not local:
        raise ValueError("not an e-mail address (local@domain)")
    if len(local) > MAX_LOCAL or not _LOCAL.fullmatch(local):
        raise ValueError(
            f"the part before @ must be letters, digits and !#$%&'*+/=?^_`{{|}}~- "
            f"in dot-separated words, at most {MAX_LOCAL} characters"
        )
    # `=?` starts an RFC 2047 encoded-word, which mail libraries decode into anything.
    if "=?" in local:
        raise ValueError("an e-mail address may not contain '=?'")
    labels = domain.split(".")
    if (
        len(domain) > MAX_DOMAIN
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or not re.search(r"[A-Za-z]", labels[-1])
    ):
        raise ValueError("the part after @ must be a domain name like example.com")
    return value


@dataclass(frozen=True)
class WebhookTarget:
    """A parsed webhook URL: `url` is its canonical ASCII form, the one to store."""

    url: str
    scheme: str
    host: str  # an ASCII host name, or an IP address (IPv6 without brackets)
    port: int  # the one to connect to: the given one, else the scheme's default
    explicit_port: bool
    path: str  # path and query, percent-encoded ASCII, at least "/"
    ip: Address | None  # the host, when the URL names an IP address

    @property
    def authority(self) -> str:
        """host[:port] as the URL has it: the `Host` header of a pinned request."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    def at(self, address: Address) -> str:
        """This URL with its host replaced by `address`, the one that was checked."""
        host = f"[{address.compressed}]" if address.version == 6 else address.compressed
        return f"{self.scheme}://{host}:{self.port}{self.path}"


_DEFAULT_PORTS = {"http": 80, "https": 443}
# host, then an optional port: an IPv6 literal is bracketed, a name has no colon.
_AUTHORITY = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>.*))?", re.DOTALL)


def webhook_target(value: str) -> WebhookTarget:
    """Parse a webhook URL, or ValueError saying what is wrong (never echoing the URL,
    which may carry credentials).

    url:       scheme "://" host [":" port] [path] ["?" query] ["#" fragment], at most
               2048 characters, no whitespace or control characters anywhere
    scheme:    http or https (any case)
    host:      "[" IPv6 address "]" without a zone id
               | an IPv4 address as four decimal numbers 0-255 without leading zeros
               | a host name: ASCII, or Unicode that IDNA 2008 encodes (stored encoded);
                 labels of letters, digits and inner hyphens, 1-63 characters each, none
                 empty, 253 at most in all; the last label not all digits, and not
                 another spelling of an IPv4 address (`127.1`, `0x7f000001`, `010.0.0.1`)
    port:      1 to 5 ASCII digits, 1-65535
    no userinfo (`user:password@`), no backslash in the authority
    The fragment is dropped; path and query are kept as httpx sends them.
    """
    import httpx  # here, not at import: only a task with a webhook pays for it

    if not isinstance(value, str):
        raise ValueError("a webhook must be a string")
    if len(value) > MAX_URL:
        raise ValueError(f"a webhook URL has at most {MAX_URL} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("a webhook URL may not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        raise ValueError("not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not value[len(scheme) :].startswith("://"):
        raise ValueError("must be an http:// or https:// URL")
    netloc = parts.netloc
    if "@" in netloc:
        raise ValueError("credentials (user:password@) do not belong in a webhook URL")
    if "\\" in netloc or "%" in netloc:
        raise ValueError("the host may not contain '\\' or '%'")
    authority = _AUTHORITY.fullmatch(netloc)
    if authority is None or not authority["host"] or not hostname:
        raise ValueError("must name a host")
    port_text = authority["port"]
    if port_text is not None and not re.fullmatch(r"[0-9]{1,5}", port_text, re.ASCII):
        raise ValueError("the port must be a number from 1 to 65535")
    port = int(port_text) if port_text is not None else _DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise ValueError("the port must be a number from 1 to 65535")
    try:
        url = httpx.URL(value)
        ascii_host = url.raw_host.decode("ascii")
        path = url.raw_path.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError):
        raise ValueError("the host is not a valid host name or IP address") from None
    # Both parsers must read the same scheme, host and port, or one of them is fooled.
    if (
        url.scheme != scheme
        or url.userinfo
        or (url.port or _DEFAULT_PORTS[scheme]) != port
        or (url.host if not hostname.isascii() else ascii_host).lower() != hostname.lower()
    ):
        raise ValueError("the URL reads differently to different parsers")
    host, ip = _host(authority["host"], ascii_host)
    explicit = port_text is not None
    shown = f"[{host}]" if ip is not None and ip.version == 6 else host
    canonical = f"{scheme}://{shown}{f':{port}' if explicit else ''}{path}"
    if len(canonical) > MAX_URL:
        raise ValueError(f"a webhook URL has at most {MAX_URL} characters once encoded")
    return WebhookTarget(canonical, scheme, host, port, explicit, path, ip)


def _host(written: str, ascii_host: str) -> tuple[str, Address | None]:
    """The host to store and connect to, and its IP address if it is a literal."""
    if written.startswith("["):
        try:
            ip = ipaddress.IPv6Address(written[1:-1])
        except ValueError:
            raise ValueError("not a valid IPv6 address in [...]") from None
        # As written: how Python prints some addresses differs between versions.
        return written[1:-1].lower(), ip
    try:
        return ascii_host, ipaddress.IPv4Address(ascii_host)
    except ValueError:
        pass
    labels = ascii_host.split(".")
    if len(ascii_host) > MAX_DOMAIN or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            "the host must be a name of letters, digits and hyphens in dot-separated "
            f"labels of 1-{MAX_LABEL} characters, or an IP address"
        )
    if labels[-1].isdigit() or _inet_aton(ascii_host):
        raise ValueError("write an IPv4 address as four decimal numbers (a.b.c.d)")
    return ascii_host.lower(), None


def _inet_aton(host: str) -> bool:
    """Whether a resolver would read `host` as an IPv4 address (`127.1`, `0x7f.1` ...)."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True
