"""Sending a reminder to a webhook: which hosts may be posted to, and the pinned POST.

Webhook targets come from event data, so an event could try to make a function probe the
cluster or a cloud metadata endpoint. The host is resolved once, every address it
resolves to must be public (or allow-listed with `NEXTUP_WEBHOOK_ALLOW`), and the request
then goes to one of those checked addresses: the URL's host is replaced by the IP
literal, the `Host` header keeps the original host[:port], and for https the TLS server
name and the certificate check use the original host name (httpx's `sni_hostname`). A
second resolution, which a DNS rebinding attack would answer differently, never happens.

Behind an HTTP proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, minus `NO_PROXY`) the proxy
makes the connection and resolves the name itself; the guard still refuses names that
resolve to non-public addresses here. Redirects are never followed.

Every failure is this one recipient's (see `nextup.notify`): PermanentFailure or
RecipientUnavailable, never Unavailable, and the whole POST, resolution included, is
bounded by one timeout.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import socket
import ssl
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from nextup.dependencies import WEBHOOKS
from nextup.notify import Message, PermanentFailure, RecipientUnavailable
from nextup.targets import Address, WebhookTarget, webhook_target

# host, port -> the addresses it resolves to, as text; raises socket.gaierror.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
DEFAULT_TIMEOUT = 10.0
MAX_RETRY_AFTER = 86_400.0  # a day: beyond that a reminder has missed its moment anyway


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


# -- which addresses are public ---------------------------------------------------------
# Explicit tables (IANA's special-purpose registries) rather than `is_global`, whose
# answers changed between Python 3.11, 3.12 and 3.13.

_V4_SPECIAL = tuple(
    ipaddress.IPv4Network(block)
    for block in (
        "0.0.0.0/8",  # "this network", the unspecified address
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast address
    )
)
# Only 2000::/3 holds global unicast addresses; inside it, these are not public.
_V6_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_SPECIAL = tuple(
    ipaddress.IPv6Network(block)
    for block in (
        "2001::/23",  # IETF protocol assignments (Teredo, 2001::/32, is judged below)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 (judged below by the IPv4 address it embeds)
        "3fff::/20",  # documentation
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address leads to: IPv4-mapped, NAT64 (well-known
    prefix), 6to4, and Teredo's server and client."""
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address in _NAT64:
        return (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo
    return ()


def public(address: Address) -> bool:
    """A unicast address on the public internet, by every address it leads to."""
    if address.version == 4:
        return not any(address in block for block in _V4_SPECIAL)
    embedded = _embedded(address)
    if embedded:
        return all(public(inner) for inner in embedded)
    # Everything outside 2000::/3 is loopback, unspecified, IPv4-compatible (::/96),
    # link-local, unique-local, multicast, discard-only, NAT64 local-use or unassigned.
    return address in _V6_UNICAST and not any(address in block for block in _V6_SPECIAL)


@dataclass(frozen=True)
class WebhookPolicy:
    """Which webhook hosts may be private (exact host names or CIDR blocks), and how names
    are resolved (the system's resolver; tests bring their own)."""

    allow: tuple[str, ...] = ()
    resolve: Resolver = system_resolver

    def _allowed(self, host: str, address: Address) -> bool:
        for entry in self.allow:
            if entry.lower() == host:
                return True
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False

    async def addresses(self, target: WebhookTarget) -> list[Address]:
        """Resolve the host once and check every address: the ones that may be posted to,
        in the resolver's order. PermanentFailure if any is refused, or there are none."""
        if target.ip is not None:
            found: list[Address] = [target.ip]
        else:
            try:
                answers = await self.resolve(target.host, target.port)
            except socket.gaierror as exc:
                raise _unresolved(target.host, exc) from None
            except (UnicodeError, ValueError):
                raise PermanentFailure(f"webhook host {target.host!r} is not a name") from None
            found = []
            for text in answers:
                try:
                    # Without a zone id (fe80::1%eth0): the address is what is judged.
                    address = ipaddress.ip_address(str(text).partition("%")[0])
                except ValueError:
                    raise PermanentFailure(
                        f"webhook host {target.host!r} resolves to something that is not an "
                        "IP address"
                    ) from None
                if address not in found:
                    found.append(address)
        if not found:
            raise PermanentFailure(f"webhook host {target.host!r} does not resolve")
        for address in found:
            if not public(address) and not self._allowed(target.host, address):
                raise PermanentFailure(
                    f"webhook host {target.host!r} resolves to a non-public address; "
                    "allow it with NEXTUP_WEBHOOK_ALLOW"
                )
        return found


# The host does not exist, or has no address: asking again will not change that.
_NO_SUCH_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def _unresolved(host: str, exc: socket.gaierror) -> Exception:
    if exc.errno in _NO_SUCH_HOST:
        return PermanentFailure(f"webhook host {host!r} does not resolve")
    # EAI_AGAIN and the rest: the resolver could not answer now.
    return RecipientUnavailable(f"webhook host {host!r} could not be resolved now")


# -- the POST -----------------------------------------------------------------------------


@functools.cache
def _tls() -> ssl.SSLContext:
    # Built once per process: loading the CA bundle costs more than a reminder's POST.
    return httpx.create_ssl_context()


def _proxy(target: WebhookTarget) -> str | None:
    """The proxy the environment names for this URL, if any."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(target.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass_environment(target.host, proxies):
        return proxy
    return None


async def post(
    url: str,
    message: Message,
    *,
    policy: WebhookPolicy | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    verify: ssl.SSLContext | None = None,
) -> None:
    """POST the reminder to `url`: 2xx is delivered; anything else raises PermanentFailure
    or RecipientUnavailable. `timeout` bounds everything: resolution, connection, sending,
    the answer. `verify` is the TLS trust (default: httpx's CA bundle, or SSL_CERT_FILE)."""
    try:
        async with asyncio.timeout(timeout):
            await _post(url, message, policy or WebhookPolicy(), timeout, verify or _tls())
    except TimeoutError:
        raise RecipientUnavailable(f"webhook did not answer within {timeout:g} s") from None
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        # Whatever URL or encoding error the parser did not foresee: this reminder's alone.
        raise PermanentFailure(f"invalid webhook URL: {type(exc).__name__}") from None


async def _post(
    url: str, message: Message, policy: WebhookPolicy, timeout: float, verify: ssl.SSLContext
) -> None:
    try:
        target = webhook_target(url)
    except ValueError as exc:
        raise PermanentFailure(f"invalid webhook URL: {exc}") from None
    addresses = await policy.addresses(target)
    proxy = _proxy(target)
    # A client per POST: a pooled connection, made for one host name and checked for its
    # certificate, must never carry a request for another name that shares the address.
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, proxy=proxy, verify=verify, timeout=timeout
    ) as client:
        response = await _send(client, target, None if proxy else addresses, message)
    status = response.status_code
    if response.is_success:
        return
    if WEBHOOKS.transient_status(status):  # later, for this recipient: the table says
        raise RecipientUnavailable(
            f"webhook answered {status}", retry_after=retry_after(response.headers)
        )
    if response.is_redirect:
        raise PermanentFailure(f"webhook answered {status} (redirects are not followed)")
    raise PermanentFailure(f"webhook answered {status}")


async def _send(
    client: httpx.AsyncClient,
    target: WebhookTarget,
    addresses: list[Address] | None,
    message: Message,
) -> httpx.Response:
    """Send to the first checked address that takes the connection (None: via the proxy,
    to the URL as it is). Only the status and headers are read."""
    last: Exception | None = None
    # Serialised here, ASCII-escaped: any title encodes, even one with a lone surrogate.
    body = json.dumps(message.payload()).encode()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": message.message_id,
        "Host": target.authority,
    }
    for address in addresses or [None]:
        try:
            request = client.build_request(
                "POST",
                target.url if address is None else target.at(address),
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )
            response = await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            # Nothing was sent: the next checked address may take it.
            last = exc
            continue
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
            raise PermanentFailure(f"webhook request impossible: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise RecipientUnavailable(f"webhook unreachable: {type(exc).__name__}") from None
        await response.aclose()  # a body nobody reads, however long, is never downloaded
        return response
    raise RecipientUnavailable(f"webhook unreachable: {type(last).__name__}")


def retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds (delay-seconds or an HTTP date), within 0 to a day, or None
    when absent or unreadable."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
