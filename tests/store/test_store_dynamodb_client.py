"""The light DynamoDB client against botocore: the same signatures, the same store errors,
and a function on it that never imports boto3 (`nextup.store.dynamodb_json`)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.exceptions import ClientError
from store_helpers import T0, fresh_table, task

from harness import first_completion
from nextup.store import CommitConflict, StoreError, StoreNotReady, open_store
from nextup.store.dynamodb import CLIENT_SETTING, DynamoBackend, make_client, store_error
from nextup.store.dynamodb_json import (
    CONTENT_TYPE,
    TARGET_PREFIX,
    DynamoJsonClient,
    ServiceError,
    operation_name,
)
from nextup.store.items import Item, Write
from nextup.store.sigv4 import Credentials, sign

# -- the signature -----------------------------------------------------------------------

URLS = [
    "https://dynamodb.eu-central-1.amazonaws.com/",
    "https://dynamodb.us-east-1.amazonaws.com:443/",
    "https://DynamoDB.Example.com:8443/",
    "http://127.0.0.1:8000/",
    "http://localhost:4566/",
    "http://example.com:80/",
    "http://[::1]:8000/",
]
REGIONS = ["us-east-1", "eu-central-1", "cn-north-1", "ap-southeast-2"]
TIMES = [
    datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC),
    datetime(2000, 1, 1, 0, 0, 0, tzinfo=UTC),
    datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC),
]
CREDENTIALS = [
    Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
    Credentials("ASIAEXAMPLE", "secret/with+signs=", "FwoGZXIvYXdzE//token+with/slashes=="),
]
REQUESTS = [
    ("GetItem", {"TableName": "nextup", "Key": {"pk": {"S": "u#alice"}, "sk": {"S": "t#1"}}}),
    (
        "PutItem",
        {
            "TableName": "nextup",
            "Item": {"pk": {"S": "u#zoë"}, "data": {"S": '{"title":"naïve ☃ 日本語 🎉"}'}},
            "ConditionExpression": "attribute_not_exists(pk)",
        },
    ),
    ("TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "t", "Item": {}}}]}),
    ("Query", {"TableName": "t", "Limit": 10, "ExpressionAttributeValues": {":p": {"S": "ü"}}}),
    ("BatchGetItem", {"RequestItems": {"t": {"Keys": [], "ConsistentRead": True}}}),
    ("ListTables", {}),
]


def botocore_signed(
    url: str, headers: dict[str, str], body: bytes, creds: Credentials, region: str, now: datetime
) -> dict[str, str]:
    """The headers botocore's SigV4Auth adds, at the time `now`: the steps of its
    `add_auth` (which reads the clock itself) with the timestamp given."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    auth = SigV4Auth(BotoCredentials(*creds), "dynamodb", region)
    request.context["timestamp"] = now.strftime("%Y%m%dT%H%M%SZ")
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    auth._inject_signature_to_request(
        request, auth.signature(auth.string_to_sign(request, canonical), request)
    )
    return {k: v for k, v in request.headers.items() if k not in headers}


def ours(
    url: str, headers: dict[str, str], body: bytes, creds: Credentials, region: str, now: datetime
) -> dict[str, str]:
    return sign(
        "POST", url, headers, body, credentials=creds, region=region, service="dynamodb", now=now
    )


def wire(operation: str, params: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """What the light client sends for a call: its headers and body."""
    headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation}
    return headers, json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("creds", CREDENTIALS, ids=["static", "session-token"])
def test_the_signature_is_botocores(url: str, creds: Credentials) -> None:
    checked = 0
    for region in REGIONS:
        for now in TIMES:
            for operation, params in REQUESTS:
                headers, body = wire(operation, params)
                theirs = botocore_signed(url, headers, body, creds, region, now)
                mine = ours(url, headers, body, creds, region, now)
                mine.pop("Host")  # botocore signs it without adding it: see below
                assert mine == theirs, (url, region, now, operation)
                checked += 1
    assert checked == len(REGIONS) * len(TIMES) * len(REQUESTS)


@pytest.mark.parametrize("url", URLS)
def test_the_host_signed_is_botocores(url: str) -> None:
    """The Host the light client sends is the one botocore signs (its SignedHeaders name
    `host`, and a Host of another form would fail the signature at AWS)."""
    from botocore.auth import _host_from_url

    headers, body = wire("GetItem", {})
    added = ours(url, headers, body, CREDENTIALS[0], "us-east-1", TIMES[0])
    assert added["Host"] == _host_from_url(url)


def test_the_signature_agrees_with_add_auth_now() -> None:
    """botocore's public `add_auth`, on the real clock: signed again at its X-Amz-Date."""
    for creds in CREDENTIALS:
        headers, body = wire("PutItem", REQUESTS[1][1])
        request = AWSRequest(method="POST", url=URLS[0], data=body, headers=dict(headers))
        SigV4Auth(BotoCredentials(*creds), "dynamodb", "eu-central-1").add_auth(request)
        now = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        mine = ours(URLS[0], headers, body, creds, "eu-central-1", now)
        assert mine["Authorization"] == request.headers["Authorization"]


def test_method_names_are_operations() -> None:
    assert operation_name("get_item") == "GetItem"
    assert operation_name("batch_write_item") == "BatchWriteItem"
    assert operation_name("transact_write_items") == "TransactWriteItems"
    assert operation_name("describe_time_to_live") == "DescribeTimeToLive"
    client = DynamoJsonClient(
        "http://127.0.0.1:9", "us-east-1", CREDENTIALS[0],
        connect_timeout=1.0, read_timeout=1.0, max_attempts=1,
    )  # fmt: skip
    for name in ("get_waiter", "exceptions", "meta", "_private"):
        with pytest.raises(AttributeError):
            getattr(client, name)


# -- the same calls through both clients ---------------------------------------------------


@pytest.fixture
def both(dynamodb_endpoint: str, aws_env: pytest.MonkeyPatch) -> Iterator[dict[str, DynamoBackend]]:
    """One table, a backend on it through each client."""
    table = fresh_table()
    backends = {}
    for kind in ("light", "boto3"):
        aws_env.setenv(CLIENT_SETTING, kind)
        backends[kind] = DynamoBackend(table)
    assert isinstance(backends["light"].client, DynamoJsonClient)
    assert not isinstance(backends["boto3"].client, DynamoJsonClient)
    try:
        yield backends
    finally:
        for backend in backends.values():
            backend.close()


def item(pk: str, version: int = 1) -> Item:
    return Item(pk, "t#1", {"title": "naïve ☃"}, version)


def refused(backend: DynamoBackend, method: str, **params: Any) -> tuple[StoreError, Any]:
    """A call that DynamoDB refuses: the store's error for it, and the client's response."""
    with pytest.raises((ServiceError, ClientError)) as caught:
        getattr(backend.client, method)(**params)
    return store_error(caught.value, backend.table), caught.value.response


def same_errors(both: dict[str, DynamoBackend], method: str, **params: Any) -> dict[str, Any]:
    (light_error, light), (boto_error, boto) = (
        refused(backend, method, **params) for backend in both.values()
    )
    assert type(light_error) is type(boto_error)
    assert str(light_error) == str(boto_error)
    assert light["Error"] == boto["Error"]
    assert light["ResponseMetadata"]["HTTPStatusCode"] == boto["ResponseMetadata"]["HTTPStatusCode"]
    assert light.get("CancellationReasons") == boto.get("CancellationReasons")
    return light


def test_a_missing_table_says_the_same(both: dict[str, DynamoBackend]) -> None:
    for backend in both.values():
        with pytest.raises(StoreNotReady) as caught:
            backend.get("u#alice", "t#1")
        assert f"table {backend.table!r} does not exist" in str(caught.value)
    same_errors(both, "get_item", TableName=both["light"].table, Key={"pk": {"S": "x"}})


def test_refusals_say_the_same(both: dict[str, DynamoBackend]) -> None:
    both["boto3"].init()
    table = both["light"].table
    attributes: dict[str, Any] = {"sk": {"S": "t#1"}, "version": {"N": "1"}}
    for kind, backend in both.items():
        assert backend.put(item(f"u#{kind}"), expect_version=0)
        assert not backend.put(item(f"u#{kind}"), expect_version=0)  # the condition's answer
        assert not backend.put(item(f"u#{kind}", 2), expect_version=7)
    attributes["pk"] = {"S": "u#light"}
    failed = same_errors(
        both, "put_item", TableName=table, Item=attributes,
        ConditionExpression="attribute_not_exists(pk)",
    )  # fmt: skip
    assert failed["Error"]["Code"] == "ConditionalCheckFailedException"
    # Validation: an expression that does not parse, a key that is not the table's.
    same_errors(both, "put_item", TableName=table, Item=attributes, ConditionExpression="pk = = :x")
    same_errors(both, "get_item", TableName=table, Key={"pk": {"S": "u#alice"}})
    invalid = same_errors(both, "query", TableName=table, KeyConditionExpression="sk = :s",
                          ExpressionAttributeValues={":s": {"S": "t"}})  # fmt: skip
    assert invalid["Error"]["Code"] == "ValidationException"


def test_a_cancelled_transaction_says_the_same(both: dict[str, DynamoBackend]) -> None:
    both["boto3"].init()
    table = both["light"].table
    both["light"].put(item("u#alice"), expect_version=0)
    writes = [
        Write(Item("u#bob", "t#1", {}, 1), expect_version=0),
        Write(item("u#alice", 2), expect_version=5),  # stored: version 1
    ]
    for backend in both.values():
        with pytest.raises(CommitConflict) as lost:
            backend.commit(writes)
        assert lost.value.failed == (1,)
        assert str(lost.value) == "commit lost a race (writes [1])"
    put = {"TableName": table, "ConditionExpression": "attribute_not_exists(pk)"}
    cancelled = same_errors(
        both,
        "transact_write_items",
        TransactItems=[
            {"Put": {**put, "Item": {"pk": {"S": "u#carol"}, "sk": {"S": "t#1"}}}},
            {"Put": {**put, "Item": {"pk": {"S": "u#alice"}, "sk": {"S": "t#1"}}}},
        ],
    )
    assert cancelled["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in cancelled["CancellationReasons"]] == [
        "None",
        "ConditionalCheckFailed",
    ]
    assert both["boto3"].get("u#carol", "t#1") is None


def test_an_unreachable_endpoint_says_the_same(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    answers = []
    for kind in ("light", "boto3"):
        aws_env.setenv(CLIENT_SETTING, kind)
        with pytest.raises(StoreError) as caught:
            open_store("dynamodb://nextup").get_task("alice", "t1")
        answers.append((type(caught.value), str(caught.value)))
    assert answers[0] == answers[1]
    assert answers[0][1] == (
        'DynamoDB is unreachable: Could not connect to the endpoint URL: "http://127.0.0.1:9/"'
    )


def test_results_are_the_same(both: dict[str, DynamoBackend]) -> None:
    """What the store reads back, written through the other client (unicode included)."""
    both["light"].init()  # init goes through boto3 beside the light client
    stored = Item("u#zoë", "t#☃", {"title": "naïve 日本語 🎉", "n": 1.5}, 3, due="2030-01-01")
    both["light"].put(stored, expect_version=None)
    assert both["boto3"].get(stored.pk, stored.sk) == stored
    raw = [backend.client.get_item(TableName=backend.table, Key={"pk": {"S": stored.pk},
           "sk": {"S": stored.sk}})["Item"] for backend in both.values()]  # fmt: skip
    assert raw[0] == raw[1]
    described = both["light"].client.describe_table(TableName=both["light"].table)
    assert described["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert described["Table"]["TableStatus"] == "ACTIVE"


# -- which client ------------------------------------------------------------------------


def test_the_client_follows_the_environment(aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    assert isinstance(make_client(), DynamoJsonClient)  # the local fallback
    aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    aws_env.setenv("AWS_SESSION_TOKEN", "token")
    light = make_client()
    assert isinstance(light, DynamoJsonClient)
    assert light.credentials == Credentials("AKIDEXAMPLE", "secret", "token")
    assert (light.region, light.url) == ("us-east-1", "http://127.0.0.1:9/")
    aws_env.delenv("AWS_ENDPOINT_URL_DYNAMODB")
    aws_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert make_client().url == "https://dynamodb.eu-west-1.amazonaws.com/"
    aws_env.setenv("AWS_REGION", "cn-north-1")
    assert make_client().url == "https://dynamodb.cn-north-1.amazonaws.com.cn/"
    for name, value in [("AWS_PROFILE", "dev"), ("HTTPS_PROXY", "http://proxy:3128"),
                        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")]:  # fmt: skip
        with pytest.MonkeyPatch.context() as env:
            env.setenv(name, value)
            if name != "AWS_PROFILE":  # boto3 would look for the profile (none here)
                assert not isinstance(make_client(), DynamoJsonClient), name
            env.setenv(CLIENT_SETTING, "light")
            with pytest.raises(ValueError, match=f"{name} is set"):
                make_client()
    with pytest.MonkeyPatch.context() as env:  # a proxy the endpoint bypasses is no proxy
        env.setenv("HTTPS_PROXY", "http://proxy:3128")
        env.setenv("NO_PROXY", "localhost,.amazonaws.com.cn")
        assert isinstance(make_client(), DynamoJsonClient)
    (tmp_path / "aws-config").write_text("[default]\nregion = eu-west-1\n")
    assert not isinstance(make_client(), DynamoJsonClient)  # a config file: boto3's
    aws_env.setenv(CLIENT_SETTING, "boto3 ")
    assert not isinstance(make_client(), DynamoJsonClient)
    aws_env.setenv(CLIENT_SETTING, "fast")
    with pytest.raises(ValueError, match="auto, light, boto3"):
        make_client()


def test_no_region_off_loopback_says_so(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    for kind in ("light", "boto3"):
        aws_env.setenv(CLIENT_SETTING, kind)
        with pytest.raises(ValueError, match="AWS_REGION"):
            make_client()


@pytest.mark.parametrize("profile", [False, True], ids=["static-credentials", "profile"])
def test_a_function_on_static_credentials_never_imports_boto3(
    dynamodb_endpoint: str, aws_env: pytest.MonkeyPatch, tmp_path: Path, profile: bool
) -> None:
    """complete-task's first event on DynamoDB: with credentials in the environment it
    needs neither boto3 nor botocore; with a profile, boto3 reads it as it always did."""
    aws_env.delenv(CLIENT_SETTING)
    url = f"dynamodb://{fresh_table()}"
    with open_store(url) as store:
        store.init()
        store.create_task(task("u", "t1", title="plant", due_at=T0))
    aws_env.setenv("NEXTUP_STORE_URL", url)
    if profile:
        (tmp_path / "aws-config").write_text("[profile nextup]\nregion = us-east-1\n")
        (tmp_path / "aws-credentials").write_text(
            "[nextup]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        )
        aws_env.setenv("AWS_PROFILE", "nextup")
    else:
        aws_env.setenv("AWS_ACCESS_KEY_ID", "testing")
        aws_env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        aws_env.setenv("AWS_REGION", "us-east-1")
    answer = first_completion(T0)
    assert answer["status"] == 202  # completed, nothing to emit
    aws = [m for m in ("boto3", "botocore") if m in answer["modules"]]
    assert aws == (["boto3", "botocore"] if profile else [])


class Recording(http.server.BaseHTTPRequestHandler):
    """Answers every call with an empty page; counts connections and calls. With
    `one_answer`, closes each connection after one answer (while saying keep-alive), as a
    server or load balancer closes an idle connection."""

    protocol_version = "HTTP/1.1"
    one_answer = False
    connections = 0
    calls: list[str] = []

    def handle(self) -> None:
        type(self).connections += 1
        if self.one_answer:
            self.handle_one_request()
        else:
            super().handle()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls.append(self.headers["X-Amz-Target"])
        body = b'{"Count":0,"Items":[]}'
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recording() -> Iterator[tuple[type[Recording], DynamoJsonClient]]:
    handler = type("Handler", (Recording,), {"calls": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = DynamoJsonClient(
        f"http://127.0.0.1:{server.server_port}", "us-east-1", CREDENTIALS[0],
        connect_timeout=1.0, read_timeout=3.0, max_attempts=1,
    )  # fmt: skip
    try:
        yield handler, client
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_a_connection_the_server_closed_is_replaced_not_failed(recording) -> None:
    handler, client = recording
    handler.one_answer = True
    for _ in range(3):
        answer = client.query(TableName="t")  # one attempt: no retry hides a failure
        assert answer["Count"] == 0 and answer["ResponseMetadata"]["RetryAttempts"] == 0
        time.sleep(0.05)  # the server's close reaches the client
    assert (handler.calls, handler.connections) == ([f"{TARGET_PREFIX}Query"] * 3, 3)


def test_each_thread_keeps_its_connection(recording) -> None:
    handler, client = recording
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.scan(TableName="t"), range(40)))
    assert all(answer["Count"] == 0 for answer in answers)
    assert handler.calls == [f"{TARGET_PREFIX}Scan"] * 40
    assert 1 <= handler.connections <= 4
