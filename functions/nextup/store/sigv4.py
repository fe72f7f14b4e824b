"""AWS Signature Version 4 for a request without a query string, with hmac and hashlib.

What `dynamodb_json` signs its calls with, so a function on DynamoDB need not import
botocore. It signs the way botocore's `SigV4Auth` does (tests/store/test_store_sigv4.py
checks the two agree header for header): every header given except the few botocore
never signs, plus ``host`` (without a default port), ``x-amz-date`` and, for temporary
credentials, ``x-amz-security-token``; the payload is always hashed.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import NamedTuple
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
# Never signed (botocore's SIGNED_HEADERS_BLACKLIST): proxies and clients may change them.
UNSIGNED = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
DEFAULT_PORTS = {"http": 80, "https": 443}


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None = None


def host_header(url: str) -> str:
    """The Host a request to `url` carries and signs: lowercase, no default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if parts.port is not None and parts.port != DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to send with `headers`: Host, X-Amz-Date, X-Amz-Security-Token (with a
    token) and Authorization. `now` is UTC; `url` must have no query string."""
    timestamp = now.strftime("%Y%m%dT%H%M%SZ")
    added = {"Host": host_header(url), "X-Amz-Date": timestamp}
    if credentials.token:
        added["X-Amz-Security-Token"] = credentials.token
    signed: dict[str, list[str]] = {}
    for name, value in (*headers.items(), *added.items()):
        lowered = name.lower()
        if lowered not in UNSIGNED:
            signed.setdefault(lowered, []).append(" ".join(value.split()))
    names = sorted(signed)
    canonical = "\n".join(
        (
            method.upper(),
            quote(urlsplit(url).path or "/", safe="/~"),
            "",  # no query string
            "".join(f"{name}:{','.join(signed[name])}\n" for name in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        )
    )
    scope = f"{timestamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        (ALGORITHM, timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    key = _hmac(f"AWS4{credentials.secret_key}".encode(), timestamp[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return added
