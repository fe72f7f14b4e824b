"""The managed backend: one DynamoDB table (single-table design), through boto3 or, on a
function's path, a light client of the same interface (`store.dynamodb_json`).

Attributes: ``pk``/``sk`` (S, the key), ``data`` (S, JSON), ``version`` (N), ``expires_at``
(N, the TTL attribute) and, only on items in the due index, ``due`` (S) with ``due_shard``
(N). The global secondary index ``due`` is keyed ``due_shard``/``due``: spreading due
items over a few shards keeps one index partition from taking every reminder write, and
`query_due` merges the shards back into one ascending stream. A shard is a stable hash of
``pk`` modulo the shard count, so the count may grow (old items stay in reachable shards)
but must never shrink.

Timeouts are short and retries few: the functions wrap every call in their own retry
budget and circuit breaker, and a health probe must answer fast when DynamoDB does not.

Which client (`make_client`, setting ``NEXTUP_DYNAMODB_CLIENT``): ``auto`` (the default)
takes the light client when the environment alone says everything botocore would read
(static credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or none on a loopback
endpoint; no profile, web identity, container credentials, config or credentials file,
proxy for the endpoint, FIPS or dual-stack endpoint), and boto3 otherwise, so whatever works
with boto3 keeps working; ``light`` insists on the light client, ``boto3`` on boto3.
boto3 costs a cold start ~700 ms and ~20 MiB; it is imported only when used, and `init`
(the ``table_exists`` waiter needs its models) always uses it.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nextup import jsontext
from nextup.dependencies import STORE
from nextup.store.dynamodb_json import (
    DynamoJsonClient,
    ServiceError,
    TransportError,
    WireError,
)
from nextup.store.errors import (
    CommitConflict,
    InvalidCursor,
    StoreError,
    StoreNotReady,
    StoreUnavailable,
)
from nextup.store.items import Item, Write, decode_cursor, encode_cursor, url_options
from nextup.store.sigv4 import Credentials

if TYPE_CHECKING:
    import botocore.session

INDEX = "due"
TTL_ATTRIBUTE = "expires_at"
DEFAULT_SHARDS = 4
MAX_SHARDS = 64
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "nextup-local", "aws_secret_access_key": "nextup-local"}
# Both clients: seconds to connect and to wait for an answer, attempts per call.
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 3.0
MAX_ATTEMPTS = 2
CLIENT_SETTING = "NEXTUP_DYNAMODB_CLIENT"
CLIENTS = ("auto", "light", "boto3")
# Set, any of these makes botocore read something the light client does not: credentials
# from elsewhere, another endpoint.
BOTO3_SETTINGS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_ACCOUNT_ID",
)
# A proxy botocore would use: one of these set, and the endpoint not in NO_PROXY.
PROXY_SETTINGS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
BOTO3_FILES = (
    ("AWS_CONFIG_FILE", "~/.aws/config"),
    ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
)
# Why a transaction was cancelled, per item: these mean another writer got there first.
LOST = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
DONE = "done"
# boto3's service models, parsed once per process however many clients are made (tests
# make many); loaded with the first boto3 client.
_LOADER: Any = None


def table_definition(table: str) -> dict[str, Any]:
    """`CreateTable` arguments; infra/dynamodb/table.yaml declares the same table."""
    return {
        "TableName": table,
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "due_shard", "AttributeType": "N"},
            {"AttributeName": "due", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": INDEX,
                "KeySchema": [
                    {"AttributeName": "due_shard", "KeyType": "HASH"},
                    {"AttributeName": "due", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


def shard_of(pk: str, shards: int) -> int:
    """A stable shard for a partition: the same in every process and Python version."""
    return zlib.crc32(pk.encode()) % shards


def _configured_endpoint() -> str | None:
    """The DynamoDB endpoint the standard AWS environment variables configure, if any."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    return os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _has_credentials(session: botocore.session.Session) -> bool:
    """Whether credentials are configured, without the slow probes of an EC2 or ECS host."""
    from botocore.credentials import create_credential_resolver

    resolver = create_credential_resolver(session)
    for name in ("container-role", "iam-role"):
        resolver.remove(name)
    return resolver.load_credentials() is not None


def _region(configured: str | None, local: bool) -> str:
    """AWS_REGION (what Lambda and the other SDKs set, and wins over AWS_DEFAULT_REGION
    there; botocore ignores it), else what botocore reads, else us-east-1 on loopback."""
    region = os.environ.get("AWS_REGION") or configured
    if region is None and local:
        region = LOCAL_REGION
    if region is None:
        raise ValueError("no AWS region for DynamoDB: set AWS_REGION (or AWS_DEFAULT_REGION)")
    return region


def make_client() -> Any:
    """A DynamoDB client from the standard AWS settings: the light one or boto3's (see the
    module's docstring; ``NEXTUP_DYNAMODB_CLIENT`` forces either).

    With an endpoint on loopback (moto, DynamoDB Local) and no region or credentials
    configured, fall back to us-east-1 and dummy credentials: a local stack works out of
    the box, and a real endpoint is never called with made-up credentials.
    """
    choice = os.environ.get(CLIENT_SETTING, "").strip().lower() or "auto"
    if choice not in CLIENTS:
        raise ValueError(f"{CLIENT_SETTING} must be one of {', '.join(CLIENTS)}, not {choice!r}")
    endpoint = _configured_endpoint()
    local = endpoint is not None and _is_loopback(endpoint)
    if choice != "boto3":
        why_not = _light_unsupported(endpoint, local)
        if why_not is None:
            return _light_client(endpoint, local)
        if choice == "light":
            raise ValueError(f"{CLIENT_SETTING}=light, but {why_not}: use boto3 (auto)")
    return make_boto3_client()


def _light_unsupported(endpoint: str | None, local: bool) -> str | None:
    """Why the light client cannot read these settings exactly as botocore would, or None."""
    for name in BOTO3_SETTINGS:
        if os.environ.get(name):
            return f"{name} is set"
    for name, default in BOTO3_FILES:
        path = os.path.expanduser(os.environ.get(name) or default)
        if os.path.exists(path):
            return f"{path} exists"
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (key and secret) and (key or secret or not local):
        return "no static credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if endpoint is not None and urlsplit(endpoint).path not in ("", "/"):
        return f"the endpoint {endpoint!r} has a path"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    if endpoint is None and "-iso" in region:
        return f"the region {region!r} is in a partition of its own"
    proxies = [name for name in PROXY_SETTINGS if os.environ.get(name)]
    if proxies:
        # What botocore asks (`botocore.utils.should_bypass_proxies`), imported only here.
        from urllib.request import proxy_bypass_environment

        if not proxy_bypass_environment(urlsplit(endpoint or _regional(region)).netloc):
            return f"{proxies[0]} is set"
    return None


def _regional(region: str) -> str:
    """DynamoDB's endpoint in `region` (no FIPS, dual-stack or account endpoints)."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://dynamodb.{region}.{suffix}"


def _light_client(endpoint: str | None, local: bool) -> DynamoJsonClient:
    region = _region(os.environ.get("AWS_DEFAULT_REGION"), local)
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        token = os.environ.get("AWS_SESSION_TOKEN") or os.environ.get("AWS_SECURITY_TOKEN")
        credentials = Credentials(key, secret, token or None)
    else:  # none at all, on loopback (`_light_unsupported`)
        credentials = Credentials(
            LOCAL_CREDENTIALS["aws_access_key_id"], LOCAL_CREDENTIALS["aws_secret_access_key"]
        )
    return DynamoJsonClient(
        endpoint or _regional(region),
        region,
        credentials,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        max_attempts=MAX_ATTEMPTS,
        ca_bundle=os.environ.get("AWS_CA_BUNDLE") or None,
    )


def make_boto3_client() -> Any:
    """boto3's DynamoDB client, with the same endpoint, region and local fallback."""
    global _LOADER
    import boto3
    import botocore.session
    from botocore.config import Config
    from botocore.loaders import create_loader

    if _LOADER is None:
        _LOADER = create_loader()
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    session = boto3.session.Session(botocore_session=core)
    endpoint = _configured_endpoint()
    local = endpoint is not None and _is_loopback(endpoint)
    config = Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
        max_pool_connections=32,
    )
    kwargs: dict[str, Any] = {"config": config, "region_name": _region(session.region_name, local)}
    if local and not _has_credentials(core):
        kwargs.update(LOCAL_CREDENTIALS)
    return session.client("dynamodb", **kwargs)


def _refusal(response: dict[str, Any], table: str) -> StoreError:
    error = response.get("Error", {})
    code = error.get("Code", "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code == "ResourceNotFoundException":
        return StoreNotReady(
            f"DynamoDB table {table!r} does not exist: run "
            f"`nextup store init --store dynamodb://{table}`"
        )
    if code in STORE.statuses.errors or STORE.transient_status(status):
        return StoreUnavailable(f"DynamoDB is unavailable: {code or status}")
    return StoreError(f"DynamoDB refused: {code}: {error.get('Message', '')}")


def store_error(exc: Exception, table: str) -> StoreError:
    """A client's error as the store's: anything worth retrying is StoreUnavailable."""
    if isinstance(exc, ServiceError):
        return _refusal(exc.response, table)
    if isinstance(exc, TransportError):  # refused, reset, timed out
        return StoreUnavailable(f"DynamoDB is unreachable: {exc}")
    if isinstance(exc, WireError):
        return StoreError(f"DynamoDB call failed: {exc}")
    # Only boto3's are left, so botocore is loaded already.
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        WaiterError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        return _refusal(exc.response, table)
    if isinstance(exc, BotoConnectionError | HTTPClientError):  # refused, reset, timed out
        return StoreUnavailable(f"DynamoDB is unreachable: {exc}")
    if isinstance(exc, WaiterError):
        return StoreUnavailable(f"DynamoDB table {table!r} is not active yet: {exc}")
    if isinstance(exc, NoCredentialsError):
        return StoreError("no AWS credentials for DynamoDB")
    return StoreError(f"DynamoDB call failed: {exc}")


def _to_attributes(item: Item, shards: int) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "pk": {"S": item.pk},
        "sk": {"S": item.sk},
        "data": {"S": jsontext.dumps_text(item.data)},
        "version": {"N": str(item.version)},
    }
    if item.due is not None:
        attributes["due"] = {"S": item.due}
        attributes["due_shard"] = {"N": str(shard_of(item.pk, shards))}
    if item.expires_at is not None:
        attributes[TTL_ATTRIBUTE] = {"N": str(item.expires_at)}
    return attributes


def _from_attributes(attributes: dict[str, Any]) -> Item:
    due = attributes.get("due")
    expires_at = attributes.get(TTL_ATTRIBUTE)
    return Item(
        attributes["pk"]["S"],
        attributes["sk"]["S"],
        jsontext.loads(attributes["data"]["S"]),
        int(attributes["version"]["N"]),
        due=due["S"] if due else None,
        expires_at=int(expires_at["N"]) if expires_at else None,
    )


def _index_key(attributes: dict[str, Any]) -> dict[str, Any]:
    """The ExclusiveStartKey that resumes an index query right after this item."""
    return {name: attributes[name] for name in ("pk", "sk", "due_shard", "due")}


class DynamoBackend:
    local = False

    def __init__(self, table: str, *, shards: int = DEFAULT_SHARDS, client: Any = None) -> None:
        if not TABLE_NAME.fullmatch(table):
            raise ValueError(f"not a DynamoDB table name: {table!r}")
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be between 1 and {MAX_SHARDS}")
        self.table = table
        self.shards = shards
        self._client = client if client is not None else make_client()
        self._boto3: Any = None  # for `init` beside a light client
        # What a refusal raises (ClientError's shape), and anything a client raises.
        self._refused: tuple[type[Exception], ...] = (ServiceError,)
        self._failures: tuple[type[Exception], ...] = (ServiceError, WireError)
        if not isinstance(self._client, DynamoJsonClient):
            self._catch_boto3()

    @classmethod
    def from_url(cls, url: str) -> DynamoBackend:
        """``dynamodb://TABLE`` with option ``?shards=N``."""
        parts = urlsplit(url)
        if parts.path not in ("", "/") or parts.fragment or not parts.netloc:
            raise ValueError(f"not a DynamoDB store URL: {url!r} (use dynamodb://TABLE)")
        options = url_options(parts.query, {"shards"}, "DynamoDB")
        shards = DEFAULT_SHARDS
        if "shards" in options:
            try:
                shards = int(options["shards"])
            except ValueError:
                raise ValueError("shards must be an integer") from None
        return cls(parts.netloc, shards=shards)

    def __repr__(self) -> str:
        return f"DynamoBackend({self.table!r}, shards={self.shards})"

    @property
    def name(self) -> str:
        return f"dynamodb://{self.table}"

    @property
    def client(self) -> Any:
        return self._client

    def _catch_boto3(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._refused += (ClientError,)
        self._failures += (ClientError, BotoCoreError)

    def _admin(self) -> Any:
        """A client with boto3's models (waiters), for `init`: not on a function's path."""
        if isinstance(self._client, DynamoJsonClient):
            if self._boto3 is None:
                self._boto3 = make_boto3_client()
                self._catch_boto3()
            return self._boto3
        return self._client

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._failures as exc:
            raise store_error(exc, self.table) from exc

    # -- lifecycle -----------------------------------------------------------------------

    def init(self) -> None:
        with self._errors():
            admin = self._admin()
            try:
                admin.create_table(**table_definition(self.table))
            except self._refused as exc:
                if exc.response["Error"]["Code"] != "ResourceInUseException":
                    raise
            admin.get_waiter("table_exists").wait(
                TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
            self._check_schema(admin.describe_table(TableName=self.table)["Table"])
            self._enable_ttl(admin)

    def _check_schema(self, table: dict[str, Any]) -> None:
        wanted = table_definition(self.table)
        indexes = {index["IndexName"]: index for index in table.get("GlobalSecondaryIndexes", [])}
        if table["KeySchema"] != wanted["KeySchema"] or INDEX not in indexes:
            raise StoreError(
                f"DynamoDB table {self.table!r} exists with another schema: it needs key "
                f"pk/sk and index {INDEX!r} (infra/dynamodb/table.yaml)"
            )

    def _enable_ttl(self, admin: Any) -> None:
        for _ in range(2):  # a concurrent init may enable it between our read and write
            ttl = admin.describe_time_to_live(TableName=self.table)
            ttl = ttl["TimeToLiveDescription"]
            status = ttl.get("TimeToLiveStatus")
            if status in ("ENABLED", "ENABLING"):
                if ttl.get("AttributeName") != TTL_ATTRIBUTE:
                    raise StoreError(
                        f"DynamoDB table {self.table!r} expires items by "
                        f"{ttl.get('AttributeName')!r}, not {TTL_ATTRIBUTE!r}"
                    )
                return
            try:
                admin.update_time_to_live(
                    TableName=self.table,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
                )
                return
            except self._refused as exc:
                if exc.response["Error"]["Code"] != "ValidationException":
                    raise

    def ping(self) -> None:
        with self._errors():
            table = self._client.describe_table(TableName=self.table)["Table"]
        if table["TableStatus"] not in ("ACTIVE", "UPDATING"):
            raise StoreUnavailable(f"DynamoDB table {self.table!r} is {table['TableStatus']}")
        indexes = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
        if INDEX not in indexes:
            raise StoreNotReady(
                f"DynamoDB table {self.table!r} has no {INDEX!r} index: run "
                f"`nextup store init --store dynamodb://{self.table}`"
            )

    def close(self) -> None:
        self._client.close()
        if self._boto3 is not None:
            self._boto3.close()

    # -- items ---------------------------------------------------------------------------

    def get(self, pk: str, sk: str) -> Item | None:
        with self._errors():
            response = self._client.get_item(
                TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
            )
        found = response.get("Item")
        return None if found is None else _from_attributes(found)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> list[Item | None]:
        """One `BatchGetItem` (consistent), or a `GetItem` for a single key; what DynamoDB
        leaves unprocessed under load is asked for again."""
        if len(keys) <= 1:
            return [self.get(*key) for key in keys]
        wanted = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in dict.fromkeys(keys)]
        found: dict[tuple[str, str], Item] = {}
        while wanted:
            with self._errors():
                response = self._client.batch_get_item(
                    RequestItems={self.table: {"Keys": wanted, "ConsistentRead": True}}
                )
            for attributes in response.get("Responses", {}).get(self.table, []):
                item = _from_attributes(attributes)
                found[(item.pk, item.sk)] = item
            wanted = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
        return [found.get(key) for key in keys]

    def _put_request(self, write: Write) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "Item": _to_attributes(write.item, self.shards),
        }
        if write.expect_version == 0:
            request["ConditionExpression"] = "attribute_not_exists(pk)"
        elif write.expect_version is not None:
            request["ConditionExpression"] = "version = :expected"
            request["ExpressionAttributeValues"] = {":expected": {"N": str(write.expect_version)}}
        return request

    def put(self, item: Item, *, expect_version: int | None) -> bool:
        with self._errors():
            try:
                self._client.put_item(**self._put_request(Write(item, expect_version)))
            except self._refused as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    return False
                raise
        return True

    def commit(self, writes: Sequence[Write]) -> None:
        """`TransactWriteItems` (a single write is a plain conditional `PutItem`: half the
        write units). A cancelled transaction says per item why; a lost condition or a
        concurrent transaction on the same item is a `CommitConflict`."""
        if len(writes) == 1:
            if not self.put(writes[0].item, expect_version=writes[0].expect_version):
                raise CommitConflict((0,))
            return
        items = []
        for write in writes:
            items.append({"Put": self._put_request(write)})
        with self._errors():
            try:
                self._client.transact_write_items(TransactItems=items)
            except self._refused as exc:
                error = exc.response.get("Error", {})
                if error.get("Code") != "TransactionCanceledException":
                    raise
                reasons = [
                    r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])
                ]
                failed = tuple(i for i, code in enumerate(reasons) if code in LOST)
                if failed or not reasons:
                    raise CommitConflict(failed) from None
                busy = [code for code in reasons if code not in ("None", *LOST)]
                raise StoreUnavailable(f"DynamoDB cancelled the commit: {busy}") from None

    def put_many(self, writes: Sequence[Write]) -> list[bool]:
        """One `TransactWriteItems` of them all. It is all or nothing, so when it is
        cancelled its reasons name the writes that lost (their condition, or the item to
        another writer's transaction): those are left out and the rest tried again, one
        round trip more per round of losers, so an item another writer has never holds
        the others back."""
        written = [False] * len(writes)
        trying = list(range(len(writes)))
        while trying:
            try:
                self.commit([writes[i] for i in trying])
            except CommitConflict as lost:
                if not lost.failed:  # no reasons given: each on its own
                    for i in trying:
                        written[i] = self.put(
                            writes[i].item, expect_version=writes[i].expect_version
                        )
                    return written
                trying = [i for n, i in enumerate(trying) if n not in lost.failed]
                continue
            for i in trying:
                written[i] = True
            break
        return written

    def delete(self, pk: str, sk: str) -> None:
        with self._errors():
            self._client.delete_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}})

    def purge_expired(self, before: int) -> int:
        return 0  # the table's TTL deletes expired items; the Store ignores them until then

    def query(
        self, pk: str, sk_prefix: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Item], str | None]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":prefix": {"S": sk_prefix}},
            "Limit": limit,
            "ConsistentRead": True,
        }
        if cursor is not None:
            start = decode_cursor(cursor)
            if not (
                isinstance(start, dict)
                and start.get("pk") == {"S": pk}
                and str(start.get("sk", {}).get("S", "")).startswith(sk_prefix)
            ):
                raise InvalidCursor("not from this query")
            request["ExclusiveStartKey"] = start
        with self._errors():
            response = self._client.query(**request)
        last = response.get("LastEvaluatedKey")
        items = [_from_attributes(found) for found in response.get("Items", [])]
        return items, encode_cursor(last) if last else None

    def query_due(
        self, until: str, *, limit: int, cursor: str | None
    ) -> tuple[list[Item], str | None]:
        """Merge the shards' ascending streams into one; the cursor keeps each shard's place.

        Each page reads up to `limit` items from every unfinished shard and returns the
        `limit` smallest, so order is global at the price of reading up to shards * limit.
        """
        positions = self._due_positions(cursor)
        fetched: dict[int, tuple[list[dict[str, Any]], dict[str, Any] | None]] = {}
        for shard, position in enumerate(positions):
            if position == DONE:
                continue
            request: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": INDEX,
                "KeyConditionExpression": "due_shard = :shard AND due <= :until",
                "ExpressionAttributeValues": {
                    ":shard": {"N": str(shard)},
                    ":until": {"S": until},
                },
                "Limit": limit,
            }
            if position is not None:
                request["ExclusiveStartKey"] = position
            with self._errors():
                response = self._client.query(**request)
            fetched[shard] = (response.get("Items", []), response.get("LastEvaluatedKey"))

        streams = [
            [(found["due"]["S"], shard, found) for found in items]
            for shard, (items, _) in fetched.items()
        ]
        taken = list(itertools.islice(heapq.merge(*streams, key=_due_order), limit))
        consumed: dict[int, list[dict[str, Any]]] = {}
        for _, shard, found in taken:
            consumed.setdefault(shard, []).append(found)

        for shard, (items, last) in fetched.items():
            used = consumed.get(shard, [])
            if len(used) < len(items):
                positions[shard] = _index_key(used[-1]) if used else positions[shard]
            else:
                positions[shard] = last if last else DONE
        next_cursor = None if all(p == DONE for p in positions) else encode_cursor(positions)
        return [_from_attributes(found) for _, _, found in taken], next_cursor

    def _due_positions(self, cursor: str | None) -> list[Any]:
        if cursor is None:
            return [None] * self.shards
        positions = decode_cursor(cursor)
        if not (
            isinstance(positions, list)
            and len(positions) == self.shards
            and all(p is None or p == DONE or isinstance(p, dict) for p in positions)
        ):
            raise InvalidCursor("not from a due query of this table")
        return positions


def _due_order(entry: tuple[str, int, dict[str, Any]]) -> str:
    return entry[0]
