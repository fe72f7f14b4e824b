"""Knative's OIDC sender identity, against the functions in-process (the fast layer; as
processes where what a process writes is the point) and a real local OIDC issuer
(discovery document + JWKS over HTTP) with tokens signed by keys made here.

With NEXTUP_OIDC_ISSUER and NEXTUP_OIDC_AUDIENCE set, an event POST needs a valid bearer
token; anything else is 401 with a JSON error, changes nothing and never echoes the
token. Health probes stay open. The JWKS is fetched once and cached, refetched for an
unknown key id (rotation) but not once per made-up id, and an issuer that is away is a
503 the broker retries, not a 401 it would dead-letter.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from harness import ROOT, FunctionGroup, cloud_event, wait_until
from reliability.oidc_issuer import AUDIENCE, Issuer

JWKS = "/openid/v1/jwks"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    issuer = Issuer().start()
    issuer.add_key("k1")
    issuer.add_key("ec1", "EC")
    issuer.add_key("rotated", publish=False)  # published later: key rotation
    issuer.add_key("stranger", publish=False)  # never published
    try:
        yield issuer
    finally:
        issuer.stop()


class Secured(FunctionGroup):
    """Functions that require a token from `issuer`, over an SQLite store of their own: in
    this process (the fast layer), or with `in_process=False` as processes."""

    def __init__(self, tmp: Path, issuer: Issuer, *, in_process: bool = True, **extra: str):
        self.db = tmp / "state.db"
        store_url = f"sqlite:///{self.db}"
        env = {
            "NEXTUP_STORE_URL": store_url,
            "NEXTUP_OIDC_ISSUER": issuer.url,
            "NEXTUP_OIDC_AUDIENCE": AUDIENCE,
            **extra,
        }
        super().__init__(store_url, env, None, None, in_process=in_process)

    def start(self, *names: str) -> Secured:
        self.launch(names, lambda name: self.env)
        return self

    def post(self, name: str, event: tuple[dict, bytes], token: str | None) -> httpx.Response:
        headers, body = event
        if token is not None:
            headers = {**headers, "authorization": token}
        return self.caller.post(self.url(name), headers=headers, content=body)

    def dump(self) -> list[tuple]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute("SELECT * FROM items ORDER BY pk, sk").fetchall()

    def logs(self) -> str:
        """Everything the function processes wrote."""
        return "\n".join(f.log_path.read_text() for f in self.functions.values())


@pytest.fixture(scope="module")
def secured(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    stack = Secured(tmp_path_factory.mktemp("auth"), issuer).start("schedule-next", "health")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def secured_processes(
    issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    """`secured` as function processes: for what only a process shows (all it writes)."""
    tmp = tmp_path_factory.mktemp("auth-processes")
    stack = Secured(tmp, issuer, in_process=False).start("schedule-next")
    try:
        yield stack
    finally:
        stack.stop()


def created(task: str | None = None) -> tuple[dict, bytes]:
    task = task or f"t-{uuid.uuid4().hex[:10]}"
    return cloud_event(
        "todo.task.created",
        {"user_id": "ann", "task_id": task, "title": "Water the plants"},
        id_=f"e-{uuid.uuid4().hex}",
    )


@pytest.mark.fast
def test_valid_tokens_are_accepted_and_the_jwks_is_fetched_once(secured, issuer):
    before = issuer.count(JWKS)
    for _ in range(15):
        response = secured.post("schedule-next", created(), f"Bearer {issuer.token()}")
        assert response.status_code == 202, response.text
    assert issuer.count(JWKS) - before <= 1, "the JWKS is cached, not fetched per request"
    # ES256 keys, an audience list and the scheme in another case are fine too.
    token = issuer.token("ec1", aud=["someone-else", AUDIENCE])
    assert secured.post("schedule-next", created(), f"bearer {token}").status_code == 202
    for alg in ("RS512", "PS256"):
        token = issuer.token(alg=alg)
        assert secured.post("schedule-next", created(), f"Bearer {token}").status_code == 202


BAD_TOKENS: dict[str, Callable[[Issuer], str | None]] = {
    "missing header": lambda i: None,
    "empty header": lambda i: "",
    "scheme only": lambda i: "Bearer",
    "basic auth": lambda i: "Basic YW5uOnNlY3JldA==",
    "token without scheme": lambda i: i.token(),
    "expired": lambda i: f"Bearer {i.token(exp=int(time.time()) - 300)}",
    "not valid yet": lambda i: f"Bearer {i.token(nbf=int(time.time()) + 600)}",
    "no expiry": lambda i: f"Bearer {i.token(exp=None)}",
    "expiry not a number": lambda i: f"Bearer {i.token(exp='tomorrow')}",
    "wrong audience": lambda i: f"Bearer {i.token(aud='nextup/send-reminder')}",
    "audience list without ours": lambda i: f"Bearer {i.token(aud=['a', 'b'])}",
    "no audience": lambda i: f"Bearer {i.token(aud=None)}",
    "wrong issuer": lambda i: f"Bearer {i.token(iss='https://evil.example')}",
    "issuer with a trailing slash": lambda i: f"Bearer {i.token(iss=i.url + '/')}",
    "no issuer": lambda i: f"Bearer {i.token(iss=None)}",
    "bad signature": lambda i: f"Bearer {_resigned(i)}",
    "tampered payload": lambda i: f"Bearer {_tampered(i)}",
    "unknown kid": lambda i: f"Bearer {i.token('stranger')}",
    "alg none": lambda i: f"Bearer {i.unsigned()}",
    "alg none without signature dot": lambda i: f"Bearer {i.unsigned().rstrip('.')}",
    "HS256 keyed with the public key": lambda i: f"Bearer {i.hmac_with_public_key()}",
    "header alg differs from the signature's": lambda i: f"Bearer {_realg(i, 'RS512')}",
    "header alg HS256 over an RS256 signature": lambda i: f"Bearer {_realg(i, 'HS256')}",
    "garbage": lambda i: "Bearer a.b.c",
    "not base64": lambda i: "Bearer %%%.%%%.%%%",
    "two segments": lambda i: "Bearer " + ".".join(i.token().split(".")[:2]),
    "oversize token": lambda i: "Bearer " + "a" * 9000,
}


def _resigned(issuer: Issuer) -> str:
    """Signed by an unpublished key, claiming to be k1."""
    header, payload, _ = issuer.token("k1").split(".")
    _, _, signature = issuer.token("stranger").split(".")
    return f"{header}.{payload}.{signature}"


def _realg(issuer: Issuer, alg: str) -> str:
    """An RS256 signature under a header that claims another algorithm."""
    _, payload, signature = issuer.token("k1").split(".")
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": "k1"}).encode())
    return f"{header.rstrip(b'=').decode()}.{payload}.{signature}"


def _tampered(issuer: Issuer) -> str:
    header, _, signature = issuer.token("k1").split(".")
    _, payload, _ = issuer.token("k1", sub="system:serviceaccount:kube-system:admin").split(".")
    return f"{header}.{payload}.{signature}"


@pytest.mark.fast
@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_every_bad_token_is_401_and_changes_nothing(secured, issuer, case):
    token = BAD_TOKENS[case](issuer)
    before = secured.dump()
    response = secured.post("schedule-next", created(), token)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert set(body) == {"error", "field"} and body["field"] == "authorization"
    secret = (token or "").split(" ", 1)[-1]
    if len(secret) >= 16:
        assert secret[:16] not in response.text, "the token is echoed"
        assert secret[-16:] not in response.text, "the token is echoed"
    assert secured.dump() == before


@pytest.mark.fast
def test_a_rotated_key_is_picked_up_by_refetching_the_jwks(secured, issuer):
    assert secured.post("schedule-next", created(), f"Bearer {issuer.token()}").status_code == 202
    before = issuer.count(JWKS)
    issuer.publish("rotated")
    response = secured.post("schedule-next", created(), f"Bearer {issuer.token('rotated')}")
    assert response.status_code == 202, response.text
    assert issuer.count(JWKS) == before + 1


@pytest.mark.fast
def test_made_up_key_ids_do_not_hammer_the_issuer(secured, issuer):
    before = issuer.count(JWKS)

    async def flood() -> list[int]:
        async with httpx.AsyncClient(timeout=30, transport=secured.async_transport) as client:

            async def one(n: int) -> int:
                headers, body = created()
                _, payload, signature = issuer.token("stranger").split(".")
                # A new made-up key id every time.
                forged = ".".join((_kid_header(f"made-up-{n}"), payload, signature))
                headers["authorization"] = f"Bearer {forged}"
                response = await client.post(
                    secured.url("schedule-next"), headers=headers, content=body
                )
                return response.status_code

            return await asyncio.gather(*(one(n) for n in range(40)))

    statuses = asyncio.run(flood())
    assert set(statuses) == {401}
    assert issuer.count(JWKS) - before <= 3, "unknown key ids refetch at most once a second"


def _kid_header(kid: str) -> str:
    raw = json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.fast
def test_health_probes_stay_open_and_events_to_health_need_a_token(secured, issuer):
    url = secured.url("health")
    for path in ("/health/liveness", "/health/readiness", "/_/health", "/_/ready", "/"):
        assert secured.caller.get(url + path, timeout=10).status_code == 200, path
    probe = cloud_event("todo.health.probe", {}, id_=f"p-{uuid.uuid4().hex}")
    assert secured.post("health", probe, None).status_code == 401
    assert secured.post("health", probe, f"Bearer {issuer.token()}").status_code == 200


def test_tokens_never_reach_the_logs(secured_processes, issuer):
    secured = secured_processes
    token = issuer.token(exp=int(time.time()) - 3600)
    assert secured.post("schedule-next", created(), f"Bearer {token}").status_code == 401
    logs = secured.logs()
    assert token.split(".")[2][:30] not in logs
    assert token.split(".")[1][:30] not in logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    refusals = [line for line in lines if line.get("status") == 401]
    assert refusals, "the refusal is logged (without the token)"
    assert refusals[-1]["error"] == "the token has expired"


@pytest.mark.fast
def test_an_issuer_that_is_away_is_503_not_401_and_cached_keys_keep_working(
    issuer, tmp_path_factory
):
    stack = Secured(tmp_path_factory.mktemp("auth-away"), issuer, NEXTUP_OIDC_JWKS_TTL="0.5").start(
        "schedule-next"
    )
    try:
        issuer.down = True
        response = stack.post("schedule-next", created(), f"Bearer {issuer.token()}")
        assert response.status_code == 503, response.text
        assert response.json()["field"] == "oidc"
        assert int(response.headers["retry-after"]) >= 1
        issuer.down = False
        task = f"t-{uuid.uuid4().hex[:8]}"
        first = stack.post("schedule-next", created(task), f"Bearer {issuer.token()}")
        assert first.status_code == 202, first.text
        # Away again once the keys are cached: past their TTL the function tries to
        # refresh them, fails, and keeps using the ones it has.
        issuer.down = True
        refreshes = len(issuer.requests)

        def refreshed_while_away() -> bool:
            response = stack.post("schedule-next", created(), f"Bearer {issuer.token()}")
            assert response.status_code == 202, response.text
            return len(issuer.requests) > refreshes

        wait_until(refreshed_while_away, 10, "a JWKS refresh attempt while the issuer is away")
    finally:
        issuer.down = False
        stack.stop()


@pytest.mark.fast
def test_half_a_configuration_fails_closed(issuer, tmp_path_factory):
    stack = Secured(tmp_path_factory.mktemp("auth-half"), issuer)
    stack.env.pop("NEXTUP_OIDC_AUDIENCE")
    stack.start("schedule-next")
    try:
        for token in (None, f"Bearer {issuer.token()}"):
            response = stack.post("schedule-next", created(), token)
            assert response.status_code == 503, response.text
            assert response.json()["field"] == "oidc"
        assert stack.dump() == []
    finally:
        stack.stop()


def test_a_function_without_oidc_never_imports_the_jose_library():
    probe = (
        "import runpy, sys; "
        f"runpy.run_path({str(ROOT / 'functions' / 'complete-task' / 'main.py')!r}); "
        "print(sorted(m for m in sys.modules if m.startswith(('joserfc', 'nextup.auth', "
        "'cryptography'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]", out.stdout
