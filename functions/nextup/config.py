"""Configuration from the environment (prefix ``NEXTUP_``), read once per process.

`K_SINK` is Knative's own name for where a function sends what it emits (set by a
SinkBinding or `func`); `NEXTUP_SINK` is accepted too, for OpenFaaS and local runs.

Under OpenFaaS, secrets are files in /var/openfaas/secrets/ (`faas-cli secret create NAME`),
not environment variables: the SMTP password is also read from the file
`nextup-smtp-password` there. The environment wins when both are set.

Each dependency's retries and breaker can be set on their own, over the shared
`NEXTUP_RETRY_BUDGET`, `NEXTUP_BREAKER_FAILURES` and `NEXTUP_BREAKER_RECOVERY`:
`NEXTUP_RETRY_<NAME>_ATTEMPTS`, `_BUDGET`, `_DELAY`, `_MAX_DELAY` and
`NEXTUP_BREAKER_<NAME>_FAILURES`, `_RECOVERY` (NAME: `STORE`, `SMTP`, `SINK`, `BACKEND`,
`DAPR`, ...; see `nextup.dependencies`), or all at once as JSON in `NEXTUP_OVERRIDES`
(`{"smtp": {"attempts": 3}}`).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from nextup.dependencies import BREAKER_KNOBS, NAMES, RETRY_KNOBS

DEFAULT_STORE_URL = "sqlite:///.nextup/state.db"
OPENFAAS_SECRETS = Path("/var/openfaas/secrets")


def _secrets_dir() -> Path | None:
    return OPENFAAS_SECRETS if OPENFAAS_SECRETS.is_dir() else None


class Override(BaseModel):
    """One dependency's own retry policy and breaker; what is None is the table's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int | None = Field(default=None, ge=1, le=100)
    budget: float | None = Field(default=None, gt=0)
    delay: float | None = Field(default=None, ge=0)
    max_delay: float | None = Field(default=None, ge=0)
    failures: int | None = Field(default=None, ge=1)
    recovery: float | None = Field(default=None, gt=0)


_OVERRIDE = re.compile(
    r"NEXTUP_(?P<kind>RETRY|BREAKER)_(?P<name>[A-Z]+)_(?P<knob>[A-Z_]+)", re.IGNORECASE
)


class _Overrides(PydanticBaseSettingsSource):
    """`NEXTUP_RETRY_<NAME>_<KNOB>` and `NEXTUP_BREAKER_<NAME>_<KNOB>` as `overrides`."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read in __call__

    def __call__(self) -> dict[str, Any]:
        found: dict[str, dict[str, str]] = {}
        for key, value in os.environ.items():
            match = _OVERRIDE.fullmatch(key)
            if match is None:
                continue
            kind, name, knob = match["kind"].upper(), match["name"].lower(), match["knob"].upper()
            knobs = RETRY_KNOBS if kind == "RETRY" else BREAKER_KNOBS
            if name not in NAMES or knob not in knobs:
                raise ValueError(
                    f"{key}: no such setting; dependencies are {', '.join(NAMES)}, and "
                    f"NEXTUP_{kind}_<NAME>_ takes {', '.join(knobs)}"
                )
            found.setdefault(name, {})[knobs[knob]] = value
        return {"overrides": found} if found else {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NEXTUP_", extra="ignore", secrets_dir=_secrets_dir()
    )

    store_url: str = DEFAULT_STORE_URL
    # DynamoDB's client: auto (the light one when the environment holds all AWS settings,
    # else boto3), light, boto3. Read by `nextup.store.dynamodb` with the AWS settings.
    dynamodb_client: Literal["auto", "light", "boto3"] = "auto"
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
    # Dependencies (`nextup.dependencies`): the retry budget of one call and the breaker
    # every dependency with one shares, unless overridden for that dependency alone.
    retry_budget: float = Field(default=8.0, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_recovery: float = Field(default=15.0, gt=0)
    overrides: dict[str, Override] = Field(default={})  # see nextup.fields.Model
    # Seconds a delivery has from its arrival: every retry in it stops there and it answers
    # 503 with Retry-After. Below a Trigger's timeout (PT30S), so the broker never gives
    # up on an answer that was coming; a sweep stops claiming reminders well before it.
    event_deadline: float = Field(default=25.0, gt=0, lt=30)
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
    dapr_topics: Annotated[dict[str, str], NoDecode] = Field(default={})  # see fields.Model
    dapr_topic: str | None = None
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        overrides = _Overrides(settings_cls)
        return init_settings, overrides, env_settings, dotenv_settings, file_secret_settings

    @field_validator("overrides")
    @classmethod
    def _known(cls, value: dict[str, Override]) -> dict[str, Override]:
        unknown = sorted(set(value) - set(NAMES))
        if unknown:
            raise ValueError(f"no dependency {unknown[0]!r}; they are {', '.join(NAMES)}")
        return value

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
