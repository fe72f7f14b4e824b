"""Fixtures for the store contract suite: every test runs once per backend, each on a
fresh SQLite file or a fresh DynamoDB table in this worker's moto server.

DynamoDB is called through the light client (`nextup.store.dynamodb_json`), what a
function uses; a module that sets ``THROUGH_BOTO3 = True`` (the core contract) runs on a
third kind too, ``dynamodb-boto3``: the same table through boto3's client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import fresh_table

from nextup.store import Backend, Store, open_store
from nextup.store.dynamodb import CLIENT_SETTING
from nextup_dev.stores import DYNAMODB, SQLITE, STORE_KINDS
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
    CLIENT_SETTING,
)
DYNAMODB_BOTO3 = "dynamodb-boto3"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that needs a store, once per kind (unless it picks its own)."""
    if "store_url" not in metafunc.fixturenames:
        return
    if any(
        "store_url" in str(marker.args[0])
        for marker in metafunc.definition.iter_markers("parametrize")
    ):
        return
    kinds = STORE_KINDS
    if getattr(metafunc.module, "THROUGH_BOTO3", False):
        kinds = (*kinds, DYNAMODB_BOTO3)
    metafunc.parametrize("store_url", kinds, indirect=True)


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
    """moto as the DynamoDB endpoint, with no region or credentials: the local fallback,
    through the light client (it fails here, not later, if it cannot be used)."""
    aws_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_server)
    aws_env.setenv(CLIENT_SETTING, "light")
    return moto_server


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == SQLITE:
        return store_url_for(SQLITE, tmp_path / "state")
    assert request.param in (DYNAMODB, DYNAMODB_BOTO3), request.param
    monkeypatch = request.getfixturevalue("aws_env")
    request.getfixturevalue("dynamodb_endpoint")
    if request.param == DYNAMODB_BOTO3:
        monkeypatch.setenv(CLIENT_SETTING, "boto3")
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
