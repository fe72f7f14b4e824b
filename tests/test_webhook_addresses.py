"""Which addresses a webhook may be posted to (`nextup.webhooks.public`, `WebhookPolicy`):
public unicast only, judged by every IPv4 address an IPv6 address leads to (IPv4-mapped,
NAT64, 6to4, Teredo), the same on Python 3.11, 3.12 and 3.13 (the tables are ours, not
`is_global`'s); a host name is resolved once and every address it has is judged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextup.notify import PermanentFailure, RecipientUnavailable
from nextup.targets import webhook_target
from nextup.webhooks import WebhookPolicy, public

NOT_PUBLIC = [
    # every spelling of loopback, the unspecified address and "this network"
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "::1",
    "::",
    "0:0:0:0:0:0:0:1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "::8.8.8.8",  # IPv4-compatible, even around a public address: never a real host
    "64:ff9b::127.0.0.1",  # NAT64 of loopback
    "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
    "64:ff9b::10.0.0.1",
    "64:ff9b:1::8.8.8.8",  # NAT64 local-use prefix
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:a00:1:8000:63bf:f7f7:f7f7",  # Teredo, server 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, client 192.0.2.45 (documentation)
    # link-local, cloud metadata, private, shared, special, documentation
    "169.254.169.254",
    "fe80::1",
    "fe80::a9fe:a9fe",
    "fd00:ec2::254",  # AWS's IPv6 metadata address (unique local)
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",
    "192.0.0.170",
    "192.0.2.1",
    "198.51.100.1",
    "203.0.113.1",
    "198.18.0.1",
    "192.88.99.1",
    "fc00::1",
    "2001:db8::1",
    "3fff::1",
    "2001:2::1",  # benchmarking
    "100::1",  # discard-only
    # multicast, reserved, broadcast
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "ff0e::1",
    "240.0.0.1",
    "255.255.255.255",
    "fec0::1",  # site-local (deprecated)
    "4000::1",  # outside 2000::/3: not assigned
]
PUBLIC = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:81c::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",  # NAT64 of a public address
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: server 65.54.227.120, client 8.8.8.8
]


@pytest.mark.parametrize("text", NOT_PUBLIC)
def test_non_public_addresses_are_refused(text):
    assert public(ipaddress.ip_address(text)) is False


@pytest.mark.parametrize("text", PUBLIC)
def test_public_unicast_addresses_are_allowed(text):
    assert public(ipaddress.ip_address(text)) is True


V4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


@settings(max_examples=500, deadline=None, database=None)
@given(V4, V4)
def test_an_ipv6_address_is_judged_by_the_ipv4_address_it_leads_to(v4, other):
    mapped = ipaddress.IPv6Address(0xFFFF << 32 | int(v4))
    nat64 = ipaddress.IPv6Address(0x0064FF9B << 96 | int(v4))
    sixtofour = ipaddress.IPv6Address(0x2002 << 112 | int(v4) << 80 | 1)
    # Teredo: prefix, server, flags and port, client XOR all ones.
    teredo = ipaddress.IPv6Address(
        0x20010000 << 96 | int(v4) << 64 | 0x8000_63BF << 32 | (int(other) ^ 0xFFFFFFFF)
    )
    assert teredo.teredo == (v4, other)
    expected = public(v4)
    assert public(mapped) == public(nat64) == public(sixtofour) == expected
    assert public(teredo) == (expected and public(other))


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.sampled_from(["fe80::/10", "fc00::/7", "ff00::/8", "::/96", "2001:db8::/32", "::1/128"]),
    st.integers(min_value=0, max_value=2**128 - 1),
)
def test_whole_non_public_ipv6_blocks_are_refused(block, bits):
    network = ipaddress.IPv6Network(block)
    address = ipaddress.IPv6Address(int(network.network_address) | (bits & int(network.hostmask)))
    assert public(address) is False


class Resolver:
    """A resolver the test controls: answers in turn, counting the questions."""

    def __init__(self, *answers: list[str] | BaseException) -> None:
        self.answers = list(answers)
        self.questions: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.questions.append((host, port))
        answer = self.answers[min(len(self.questions), len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def addresses(policy: WebhookPolicy, url: str) -> list[str]:
    found = asyncio.run(policy.addresses(webhook_target(url)))
    return [a.compressed for a in found]


def test_a_host_is_resolved_once_and_every_address_is_judged():
    resolver = Resolver(["93.184.216.34", "2606:2800:220:1::1"])
    policy = WebhookPolicy(resolve=resolver)
    assert addresses(policy, "https://hooks.example:8443/x") == [
        "93.184.216.34",
        "2606:2800:220:1::1",
    ]
    assert resolver.questions == [("hooks.example", 8443)]
    # One private address among public ones is enough to refuse.
    mixed = WebhookPolicy(resolve=Resolver(["93.184.216.34", "10.0.0.7"]))
    with pytest.raises(PermanentFailure, match="non-public"):
        addresses(mixed, "https://hooks.example/x")
    scoped = WebhookPolicy(resolve=Resolver(["fe80::1%eth0"]))
    with pytest.raises(PermanentFailure, match="non-public"):
        addresses(scoped, "https://hooks.example/x")


def test_ip_literals_are_judged_without_resolving():
    resolver = Resolver(["93.184.216.34"])
    policy = WebhookPolicy(resolve=resolver)
    assert addresses(policy, "http://[2606:4700::1111]/") == ["2606:4700::1111"]
    for url in ("http://[2002:a9fe:a9fe::]/", "http://[64:ff9b::7f00:1]/", "http://[::]/"):
        with pytest.raises(PermanentFailure, match="non-public"):
            addresses(policy, url)
    assert resolver.questions == []


def test_the_allow_list_names_hosts_and_blocks():
    policy = WebhookPolicy(
        allow=("Hooks.Internal", "10.1.2.0/24", "not a block"),
        resolve=Resolver(["10.9.9.9"]),
    )
    assert addresses(policy, "http://hooks.internal/") == ["10.9.9.9"]
    assert addresses(policy, "http://10.1.2.3/") == ["10.1.2.3"]
    with pytest.raises(PermanentFailure, match="NEXTUP_WEBHOOK_ALLOW"):
        addresses(policy, "http://10.1.3.1/")
    with pytest.raises(PermanentFailure, match="non-public"):
        addresses(policy, "http://other.internal/")


@pytest.mark.parametrize(
    "failure, outcome",
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), PermanentFailure),
        (socket.gaierror(socket.EAI_NODATA, "No address associated"), PermanentFailure),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure"), RecipientUnavailable),
        (socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure"), RecipientUnavailable),
        (UnicodeError("label too long"), PermanentFailure),
        ([], PermanentFailure),
        (["not-an-address"], PermanentFailure),
    ],
    ids=["NXDOMAIN", "no address", "EAI_AGAIN", "EAI_FAIL", "bad name", "empty", "garbage"],
)
def test_resolution_failures_are_this_recipients(failure, outcome):
    policy = WebhookPolicy(resolve=Resolver(failure))
    with pytest.raises(outcome):
        addresses(policy, "https://hooks.example/x")
