"""Knative's OIDC sender identity: who may POST events to a function.

With `NEXTUP_OIDC_ISSUER` and `NEXTUP_OIDC_AUDIENCE` set, Knative Eventing (the Broker's
dispatcher, a PingSource, a SinkBinding's sender) puts a token of its service account in
`Authorization: Bearer <JWT>`, and every event POST must carry one that:

- is signed (RS256/384/512, PS256/384/512 or ES256/384/512; never `none`, never an HMAC
  whose "secret" could be a public key) by a key of the issuer's JWKS, found through OIDC
  discovery (`<issuer>/.well-known/openid-configuration` -> `jwks_uri`);
- names the issuer (`iss`) exactly and the audience among its `aud`;
- has not expired (`exp` is required) and is already valid (`nbf`), within a small leeway.

Anything else is 401 with `{"error", "field": "authorization"}`; the token itself never
appears in an answer or a log line. Health probes (GET) stay open.

The JWKS is cached for `NEXTUP_OIDC_JWKS_TTL` seconds. A token whose `kid` is not in the
cache makes one refetch (keys rotate), coalesced across concurrent requests and at most
one per `REFETCH_INTERVAL`, so a flood of made-up key ids cannot hammer the issuer.
An issuer that cannot be reached is a transient fault (503, `Retry-After`): the broker
retries instead of dead-lettering good events; keys already cached keep working past
their TTL while it is away.

This module is imported only when OIDC is configured, and it imports the JOSE library
(joserfc, with cryptography) only then: a function without OIDC does not pay for it at
cold start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from nextup import dependencies
from nextup.dependencies import OIDC
from nextup.errors import Unauthorized, Unavailable
from nextup.resilience import RetryPolicy, call

log = logging.getLogger("nextup.auth")

FIELD = "authorization"
# Asymmetric signatures only: with an HMAC algorithm a public key would become a secret.
ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)
KEY_TYPES = ("RSA", "EC")
MAX_TOKEN = 8 * 1024  # a Kubernetes service account token is about 1 KiB
LEEWAY = 30.0  # seconds of clock skew tolerated on exp and nbf
REFETCH_INTERVAL = 1.0  # seconds between two JWKS fetches caused by unknown key ids
FETCH_TIMEOUT = OIDC.timeout
MAX_DOCUMENT = 256 * 1024  # discovery document or JWKS larger than this is not one
DISCOVERY = "/.well-known/openid-configuration"


class _Refused(Exception):
    """Why a token is not accepted; becomes a 401 with this message."""


def _b64json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise _Refused("the token is not a JWT") from None


def bearer(authorization: str | None) -> str:
    """The token in an `Authorization: Bearer <token>` header."""
    if not authorization:
        raise _Refused("an Authorization: Bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _Refused("the Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN:
        raise _Refused(f"the bearer token is longer than {MAX_TOKEN} characters")
    return token


def header_of(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified (to pick the key and check `alg`)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise _Refused("the token is not a signed JWT (header.payload.signature)")
    header = _b64json(parts[0])
    if not isinstance(header, dict):
        raise _Refused("the token header is not a JSON object")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise _Refused(f"token algorithm {str(alg)[:16]!r} is not accepted")
    if "crit" in header:
        raise _Refused("token header extensions ('crit') are not supported")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
        raise _Refused("the token's key id ('kid') is not a short string")
    return header


def check_claims(
    claims: Mapping[str, Any], *, issuer: str, audience: str, now: float, leeway: float = LEEWAY
) -> None:
    """iss, aud, exp (required) and nbf, as Knative's receivers check them."""
    if claims.get("iss") != issuer:
        raise _Refused("the token was not issued by the configured issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        raise _Refused("the token is not meant for this audience")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise _Refused("the token has no expiry ('exp')")
    if now > exp + leeway:
        raise _Refused("the token has expired")
    nbf = claims.get("nbf")
    if nbf is not None:
        if isinstance(nbf, bool) or not isinstance(nbf, int | float):
            raise _Refused("the token's 'nbf' is not a number")
        if now < nbf - leeway:
            raise _Refused("the token is not valid yet")


@dataclass
class _Keys:
    keys: dict[str, Any]  # kid -> joserfc key
    fetched_at: float
    anonymous: list[Any] = field(default_factory=list)  # keys without a kid


class Verifier:
    """Verifies bearer tokens of one issuer for one audience; one per process."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        http: httpx.AsyncClient,
        *,
        jwks_ttl: float = 300.0,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.http = http
        self.jwks_ttl = jwks_ttl
        # The issuer's retries (`dependencies.OIDC`, one attempt unless overridden): the
        # cached keys serve meanwhile.
        self.policy = policy or RetryPolicy(max_attempts=OIDC.retry.attempts)
        self.clock = clock
        self.monotonic = monotonic
        self._keys: _Keys | None = None
        self._fetching: asyncio.Future[_Keys] | None = None
        self.fetches = 0  # how many times the JWKS was fetched (tests and logs read it)

    # -- keys ----------------------------------------------------------------------------

    async def _get_json(self, url: str, what: str) -> Any:
        return await call(
            lambda: self._get_json_once(url, what),
            breaker=None,
            policy=self.policy,
            classify=OIDC.classify,
            name="oidc",
        )

    async def _get_json_once(self, url: str, what: str) -> Any:
        try:
            response = await self.http.get(
                url, timeout=FETCH_TIMEOUT, headers={"accept": "application/json"}
            )
        except httpx.TransportError as exc:
            raise Unavailable(
                f"OIDC {what} unreachable: {type(exc).__name__}", field="oidc", retry_after=2.0
            ) from None
        if OIDC.transient_status(response.status_code):
            raise Unavailable(
                f"OIDC {what} answered {response.status_code}", field="oidc", retry_after=2.0
            )
        if response.status_code != 200 or len(response.content) > MAX_DOCUMENT:
            raise Unavailable(
                f"OIDC {what} answered {response.status_code} with no usable document",
                field="oidc",
            )
        try:
            return response.json()
        except ValueError:
            raise Unavailable(f"OIDC {what} is not JSON", field="oidc") from None

    async def _fetch(self) -> _Keys:
        from joserfc.jwk import KeySet  # lazily: cryptography is a heavy import

        discovery = await self._get_json(self.issuer.rstrip("/") + DISCOVERY, "discovery")
        if not isinstance(discovery, dict) or discovery.get("issuer") != self.issuer:
            raise Unavailable(
                "OIDC discovery document does not name the configured issuer", field="oidc"
            )
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise Unavailable("OIDC discovery document has no jwks_uri", field="oidc")
        jwks = await self._get_json(jwks_uri, "JWKS")
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise Unavailable("OIDC JWKS has no keys", field="oidc")
        keys: dict[str, Any] = {}
        anonymous: list[Any] = []
        for entry in jwks["keys"]:
            if not isinstance(entry, dict) or entry.get("kty") not in KEY_TYPES:
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                key = KeySet.import_key_set({"keys": [entry]}).keys[0]
            except Exception:  # one malformed key must not hide the others
                log.warning("OIDC JWKS: skipped a key that does not parse")
                continue
            kid = entry.get("kid")
            if isinstance(kid, str):
                keys[kid] = key
            else:
                anonymous.append(key)
        self.fetches += 1
        return _Keys(keys, self.monotonic(), anonymous)

    async def _refresh(self) -> _Keys:
        """Fetch the JWKS once for everyone waiting (single flight)."""
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
            fetching = self._fetching

            def done(_: object) -> None:
                if self._fetching is fetching:
                    self._fetching = None

            fetching.add_done_callback(done)
        keys = await asyncio.shield(self._fetching)
        self._keys = keys
        return keys

    async def keys(self) -> _Keys:
        cached = self._keys
        if cached is not None and self.monotonic() - cached.fetched_at < self.jwks_ttl:
            return cached
        try:
            return await self._refresh()
        except Unavailable:
            if cached is None:
                raise
            log.warning("OIDC JWKS refresh failed: using the cached keys meanwhile")
            return cached

    async def _key_for(self, kid: str | None) -> Any:
        keys = await self.keys()
        if kid is None:
            candidates = list(keys.keys.values()) + keys.anonymous
            if len(candidates) == 1:
                return candidates[0]
            raise _Refused("the token names no key ('kid') and the issuer has several")
        if kid in keys.keys:
            return keys.keys[kid]
        # Unknown key id: the issuer may have rotated its keys. Refetch, but not more often
        # than REFETCH_INTERVAL however many tokens with made-up ids arrive.
        wait = keys.fetched_at + REFETCH_INTERVAL - self.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._keys is keys or self._keys is None:
            keys = await self._refresh()
        else:
            keys = self._keys  # someone else refetched while we waited
        if kid in keys.keys:
            return keys.keys[kid]
        raise _Refused("the token is signed with a key the issuer does not publish")

    # -- tokens --------------------------------------------------------------------------

    async def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims; Unauthorized (401) or Unavailable (503) otherwise."""
        try:
            token = bearer(authorization)
            header = header_of(token)
            key = await self._key_for(header.get("kid"))
            claims = self._signed_claims(token, key, header["alg"])
            check_claims(claims, issuer=self.issuer, audience=self.audience, now=self.clock())
        except _Refused as exc:
            raise Unauthorized(str(exc), field=FIELD) from None
        return claims

    @staticmethod
    def _signed_claims(token: str, key: Any, alg: str) -> dict[str, Any]:
        from joserfc import jwt
        from joserfc.errors import JoseError

        try:
            decoded = jwt.decode(token, key, algorithms=[alg])
        except JoseError:
            raise _Refused("the token's signature does not verify") from None
        except (ValueError, TypeError):
            raise _Refused("the token is not a well-formed JWT") from None
        if not isinstance(decoded.claims, dict):
            raise _Refused("the token's claims are not a JSON object")
        return decoded.claims


_verifiers: dict[tuple[str, str, float, RetryPolicy], Verifier] = {}


def verifier(settings: Any, http: httpx.AsyncClient) -> Verifier:
    """The process's verifier for the configured issuer and audience."""
    issuer, audience = settings.oidc_issuer, settings.oidc_audience
    if not issuer or not audience:
        # Half a configuration must not silently leave the function open.
        raise Unavailable(
            "OIDC is half configured: set both NEXTUP_OIDC_ISSUER and NEXTUP_OIDC_AUDIENCE",
            field="oidc",
            retry_after=30.0,
        )
    policy = dependencies.resolve("oidc", settings).policy
    key = (issuer, audience, settings.oidc_jwks_ttl, policy)
    found = _verifiers.get(key)
    if found is None or found.http is not http:
        found = _verifiers[key] = Verifier(
            issuer, audience, http, jwks_ttl=settings.oidc_jwks_ttl, policy=policy
        )
    return found


async def authenticate(headers: Mapping[str, str], settings: Any, http: httpx.AsyncClient) -> None:
    """Raise Unauthorized unless `headers` carry a valid bearer token (OIDC configured)."""
    await verifier(settings, http).verify(headers.get("authorization"))
