"""A real OIDC issuer for tests: discovery document and JWKS over HTTP on loopback, and
tokens signed with real keys generated here (RSA 2048, and P-256 for ES256).

Only the issuer's public side is served (by a `harness.HttpRecorder`); tokens are minted
in the test process. Keys can be rotated, the JWKS can be made to fail (`down`), and every
request is recorded, so tests can see the functions' caching and refetching from the
outside.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from harness import HttpRecorder, Recorded

AUDIENCE = "nextup/complete-task"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


class Issuer:
    """`http://127.0.0.1:<port>` as an OIDC issuer with a JWKS it serves."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.published: list[str] = []  # kids in the served JWKS
        self.down = False  # answer 503 to everything
        self._lock = threading.Lock()
        self.url = ""
        self._server: HttpRecorder | None = None

    # -- keys ----------------------------------------------------------------------------

    def add_key(self, kid: str, kind: str = "RSA", *, publish: bool = True) -> Any:
        key = (
            RSAKey.generate_key(2048, parameters={"kid": kid})
            if kind == "RSA"
            else ECKey.generate_key("P-256", parameters={"kid": kid})
        )
        self.keys[kid] = key
        if publish:
            self.publish(kid)
        return key

    def publish(self, *kids: str) -> None:
        with self._lock:
            self.published.extend(kid for kid in kids if kid not in self.published)

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            kids = list(self.published)
        keys = []
        for kid in kids:
            entry = self.keys[kid].as_dict(private=False)
            entry.update(kid=kid, use="sig")
            keys.append(entry)
        return {"keys": keys}

    @property
    def requests(self) -> list[str]:
        """The path of every request served so far."""
        return [r.path for r in self._server.requests] if self._server else []

    def count(self, path: str) -> int:
        return self.requests.count(path)

    # -- tokens --------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "system:serviceaccount:nextup:nextup-broker",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(self, kid: str = "k1", *, alg: str | None = None, **claims: Any) -> str:
        key = self.keys[kid]
        alg = alg or ("RS256" if isinstance(key, RSAKey) else "ES256")
        return jwt.encode(
            {"alg": alg, "kid": kid, "typ": "JWT"}, self.claims(**claims), key, algorithms=[alg]
        )

    def unsigned(self, kid: str = "k1", **claims: Any) -> str:
        """`alg: none`: a token anyone can make."""
        header = _b64json({"alg": "none", "kid": kid, "typ": "JWT"})
        return f"{header}.{_b64json(self.claims(**claims))}."

    def hmac_with_public_key(self, kid: str = "k1", **claims: Any) -> str:
        """HS256 keyed with the issuer's public key: the classic algorithm confusion."""
        public = self.keys[kid].as_pem(private=False)
        header = _b64json({"alg": "HS256", "kid": kid, "typ": "JWT"})
        signing_input = f"{header}.{_b64json(self.claims(**claims))}"
        signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"

    # -- server --------------------------------------------------------------------------

    def _answer(self, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        if self.down:
            return _json(503, {"error": "down"})
        if request.path == "/.well-known/openid-configuration":
            return _json(
                200,
                {
                    "issuer": self.url,
                    "jwks_uri": f"{self.url}/openid/v1/jwks",
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                },
            )
        if request.path == "/openid/v1/jwks":
            return _json(200, self.jwks())
        return _json(404, {"error": "not found"})

    def start(self) -> Issuer:
        self._server = HttpRecorder(respond=self._answer).start()
        self.url = self._server.url
        return self

    def stop(self) -> None:
        self._server.stop()


def _json(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps(body).encode()
