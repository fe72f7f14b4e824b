"""A real OIDC issuer for tests: discovery document and JWKS over HTTP on loopback, and
tokens signed with real keys generated here (RSA 2048, and P-256 for ES256).

Only the issuer's public side is served; tokens are minted in the test process. Keys can
be rotated, the JWKS can be made to fail (`down`), and every request is counted, so tests
can see the functions' caching and refetching from the outside.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

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
        self.requests: list[str] = []
        self.down = False  # answer 503 to everything
        self._lock = threading.Lock()
        self.url = ""

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

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for p in self.requests if p == path)

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

    def start(self) -> Issuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with issuer._lock:
                    issuer.requests.append(self.path)
                if issuer.down:
                    return self._send(503, {"error": "down"})
                if self.path == "/.well-known/openid-configuration":
                    return self._send(
                        200,
                        {
                            "issuer": issuer.url,
                            "jwks_uri": f"{issuer.url}/openid/v1/jwks",
                            "response_types_supported": ["id_token"],
                            "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                        },
                    )
                if self.path == "/openid/v1/jwks":
                    return self._send(200, issuer.jwks())
                return self._send(404, {"error": "not found"})

            def _send(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
