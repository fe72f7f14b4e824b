"""Fixtures for the store contract suite: every test runs once per backend, each on a
fresh SQLite file or a fresh DynamoDB table in this worker's moto server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import fresh_table

from nextup.store import Backend, Store, open_store
from nextup_dev.stores import SQLITE, STORE_KINDS
from nextup_dev.stores import store_url as store_url_for

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AWS settings from the machine: no credentials, region, profile or endpoint."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.fixture
def dynamodb_endpoint(aws_env: pytest.MonkeyPatch, moto_server: str) -> str:
    """moto as the DynamoDB endpoint, with no region or credentials: the local fallback."""
    aws_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_server)
    return moto_server


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == SQLITE:
        return store_url_for(SQLITE, tmp_path / "state")
    request.getfixturevalue("dynamodb_endpoint")
    return f"dynamodb://{fresh_table()}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    opened.init()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def backend(store_url: str) -> Iterator[Backend]:
    """The bare item-level backend of `store_url`, initialised."""
    if store_url.startswith("sqlite"):
        from nextup.store.sqlite import SqliteBackend

        opened: Backend = SqliteBackend.from_url(store_url)
    else:
        from nextup.store.dynamodb import DynamoBackend

        opened = DynamoBackend.from_url(store_url)
    opened.init()
    try:
        yield opened
    finally:
        opened.close()
