"""infra/dynamodb/table.yaml declares the table `nextup store init` creates.

Both are read back from a real (moto) DynamoDB: the table `init()` made, and the table
moto's CloudFormation made from the template. TTL, which moto's CloudFormation ignores,
is compared with what the template declares. cfn-lint checks the template against the
CloudFormation resource schemas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import cfnlint.api
import pytest
import yaml
from store_helpers import fresh_table

from nextup.store import open_store
from nextup.store.dynamodb import TTL_ATTRIBUTE

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "dynamodb" / "table.yaml"


def shape(table: dict[str, Any]) -> dict[str, Any]:
    """What must agree: keys, attribute types, indexes, billing (a DescribeTable or CFN shape)."""
    billing = table.get("BillingMode") or table.get("BillingModeSummary", {}).get("BillingMode")
    return {
        "keys": [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]],
        "attributes": sorted(
            (a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]
        ),
        "indexes": sorted(
            (
                index["IndexName"],
                tuple((k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]),
                index["Projection"]["ProjectionType"],
            )
            for index in table.get("GlobalSecondaryIndexes", [])
        ),
        "billing": billing,
    }


@pytest.fixture
def client(dynamodb_endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=dynamodb_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def template() -> dict[str, Any]:
    return yaml.safe_load(TEMPLATE.read_text())


def test_template_matches_init(
    client: Any, template: dict[str, Any], dynamodb_endpoint: str
) -> None:
    table = fresh_table()
    with open_store(f"dynamodb://{table}") as store:
        store.init()
    created = client.describe_table(TableName=table)["Table"]
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]

    declared = template["Resources"]["Table"]["Properties"]
    assert shape(declared) == shape(created)
    assert shape(created)["indexes"] == [("due", (("due_shard", "HASH"), ("due", "RANGE")), "ALL")]
    assert declared["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", TTL_ATTRIBUTE)


def test_template_deploys_the_same_table(client: Any, dynamodb_endpoint: str) -> None:
    cloudformation = boto3.client(
        "cloudformation",
        endpoint_url=dynamodb_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    from_template, from_init = fresh_table(), fresh_table()
    cloudformation.create_stack(
        StackName=f"stack-{from_template}".replace("_", "-").replace(".", "-"),
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": "TableName", "ParameterValue": from_template}],
    )
    with open_store(f"dynamodb://{from_init}") as store:
        store.init()
    deployed = client.describe_table(TableName=from_template)["Table"]
    assert shape(deployed) == shape(client.describe_table(TableName=from_init)["Table"])


def test_template_lints_clean() -> None:
    assert cfnlint.api.lint(TEMPLATE.read_text(), regions=["us-east-1"]) == []
