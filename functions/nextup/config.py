"""Configuration from the environment (prefix ``NEXTUP_``), read once per process.

`K_SINK` is Knative's own name for where a function sends what it emits (set by a
SinkBinding or `func`); `NEXTUP_SINK` is accepted too, for OpenFaaS and local runs.

Under OpenFaaS, secrets are files in /var/openfaas/secrets/ (`faas-cli secret create NAME`),
not environment variables: the SMTP password is also read from the file
`nextup-smtp-password` there. The environment wins when both are set.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_STORE_URL = "sqlite:///.nextup/state.db"
OPENFAAS_SECRETS = Path("/var/openfaas/secrets")


def _secrets_dir() -> Path | None:
    return OPENFAAS_SECRETS if OPENFAAS_SECRETS.is_dir() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NEXTUP_", extra="ignore", secrets_dir=_secrets_dir()
    )

    store_url: str = DEFAULT_STORE_URL
    # Reminder delivery.
    smtp_url: str | None = None
    smtp_from: str = "nextup <reminders@nextup.local>"
    # Secret names cannot hold underscores, hence the second name (a file under OpenFaaS).
    smtp_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("NEXTUP_SMTP_PASSWORD", "nextup-smtp-password"),
    )
    webhook_allow: Annotated[tuple[str, ...], NoDecode] = ()
    # Seconds for a whole webhook POST (resolution, connection, answer): well inside a
    # Trigger's timeout (PT30S), so one hanging webhook delays a sweep, never fails it.
    webhook_timeout: float = Field(default=10.0, gt=0, le=25)
    message_domain: str = "nextup.local"
    # The todo app's own API (the seed's `backend` Dapr app id).
    backend_url: str | None = None
    # Where emitted events go; without it the one emitted event is the HTTP reply.
    sink: str | None = Field(default=None, validation_alias=AliasChoices("K_SINK", "NEXTUP_SINK"))
    source: str | None = None
    # Exactly-once bookkeeping.
    receipt_ttl: timedelta = timedelta(days=7)
    reminder_lease: timedelta = timedelta(minutes=2)
    sweep_limit: int = Field(default=500, ge=1, le=10_000)
    # Dependencies: one retry budget per event, and a breaker per dependency.
    retry_budget: float = Field(default=8.0, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_recovery: float = Field(default=15.0, gt=0)
    # Knative's OIDC sender identity (`nextup.auth`): with both set, every event POST must
    # carry a valid bearer token from that issuer for that audience.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_ttl: float = Field(default=300.0, gt=0)  # seconds the issuer's keys are cached
    # Running behind a Dapr sidecar, like the seed's services: the sidecar's port (set by
    # Dapr itself) and the pub/sub component to publish emitted events to; the topic each
    # emitted type goes to, over the defaults (`nextup.functions.DAPR_TOPICS`), as
    # `type=topic,type=topic`; the topic this function subscribes to, over its own.
    dapr_http_port: int | None = Field(
        default=None, ge=1, le=65535, validation_alias=AliasChoices("DAPR_HTTP_PORT")
    )
    dapr_pubsub: str = "kafka-pubsub"
    dapr_topics: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    dapr_topic: str | None = None
    log_level: str = "INFO"

    @field_validator("webhook_allow", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("dapr_topics", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, sep, topic = part.partition("=")
            if not sep or not name.strip() or not topic.strip():
                raise ValueError(f"expected type=topic, not {part!r}")
            pairs[name.strip()] = topic.strip()
        return pairs


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()
