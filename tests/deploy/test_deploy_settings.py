"""Settings reach the code under the names it reads, on Knative and on OpenFaaS.

Environment names used in the manifests and stack.yml are checked against
nextup.config.Settings (plus K_SINK and boto3's AWS names); OpenFaaS secrets, which arrive as
files, are read for real: the SMTP password through Settings' secrets directory, the AWS
credentials by boto3 from AWS_SHARED_CREDENTIALS_FILE.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import (
    allowed_env_names,
    by_name,
    kind_resources,
    of_kind,
    setting_env_names,
)

from nextup import config
from nextup.config import Settings

KIND = kind_resources()


def _env_names(resource: dict) -> set[str]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    names = set()
    for container in spec.get("containers", []) if isinstance(spec, dict) else []:
        names.update(e["name"] for e in container.get("env", []))
    return names


def test_the_config_map_holds_only_settings_the_code_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = by_name(of_kind(KIND, "ConfigMap"))["nextup-config"]["data"]
    unknown = set(data) - allowed_env_names()
    assert not unknown, f"nothing reads {unknown}"
    assert {"NEXTUP_STORE_URL", "AWS_REGION", "NEXTUP_SMTP_URL"} <= set(data)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.store_url == data["NEXTUP_STORE_URL"] == "dynamodb://nextup"
    assert settings.smtp_url == data["NEXTUP_SMTP_URL"]


def test_env_names_in_every_workload_are_read_by_the_code() -> None:
    used = set()
    for resource in KIND:
        if resource["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "nextup":
            continue
        if resource["kind"] == "Deployment":  # third-party stand-ins, their own variables
            continue
        used |= _env_names(resource)
    assert used, "no env found"
    assert used <= allowed_env_names(), used - allowed_env_names()


def test_the_names_come_from_settings() -> None:
    names = setting_env_names()
    assert {"NEXTUP_STORE_URL", "NEXTUP_SMTP_PASSWORD", "K_SINK", "NEXTUP_SINK"} <= names
    assert "NEXTUP_NO_SUCH_SETTING" not in allowed_env_names()


def test_the_smtp_password_is_read_from_an_openfaas_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXTUP_SMTP_PASSWORD", raising=False)
    (tmp_path / "nextup-smtp-password").write_text("from-the-file\n")
    settings = Settings(_secrets_dir=tmp_path)
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "from-the-file"

    monkeypatch.setenv("NEXTUP_SMTP_PASSWORD", "from-the-environment")
    assert Settings(_secrets_dir=tmp_path).smtp_password.get_secret_value() == (
        "from-the-environment"
    )

    monkeypatch.delenv("NEXTUP_SMTP_PASSWORD")
    other = tmp_path / "another-function"
    other.mkdir()
    assert Settings(_secrets_dir=other).smtp_password is None


def test_the_secrets_directory_is_used_only_where_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Path("/var/openfaas/secrets") == config.OPENFAAS_SECRETS
    monkeypatch.setattr(config, "OPENFAAS_SECRETS", tmp_path)
    assert config._secrets_dir() == tmp_path
    monkeypatch.setattr(config, "OPENFAAS_SECRETS", tmp_path / "absent")
    assert config._secrets_dir() is None


def test_boto3_reads_the_aws_credentials_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nextup.store.dynamodb import make_client

    secret = tmp_path / "nextup-aws-credentials"
    secret.write_text("[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = s3\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(secret))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://dynamodb-local.nextup.svc:8000")
    credentials = make_client()._request_signer._credentials.get_frozen_credentials()
    assert credentials.access_key == "AKIDEXAMPLE"
    assert credentials.secret_key == "s3"
