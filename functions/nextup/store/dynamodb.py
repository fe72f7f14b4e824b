"""The managed backend: one DynamoDB table (single-table design), through boto3.

Attributes: ``pk``/``sk`` (S, the key), ``data`` (S, JSON), ``version`` (N), ``expires_at``
(N, the TTL attribute) and, only on items in the due index, ``due`` (S) with ``due_shard``
(N). The global secondary index ``due`` is keyed ``due_shard``/``due``: spreading due
items over a few shards keeps one index partition from taking every reminder write, and
`query_due` merges the shards back into one ascending stream. A shard is a stable hash of
``pk`` modulo the shard count, so the count may grow (old items stay in reachable shards)
but must never shrink.

Timeouts are short and retries few: the functions wrap every call in their own retry
budget and circuit breaker, and a health probe must answer fast when DynamoDB does not.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import json
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import create_credential_resolver
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    WaiterError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.loaders import create_loader

from nextup.dependencies import STORE
from nextup.store.errors import (
    CommitConflict,
    InvalidCursor,
    StoreError,
    StoreNotReady,
    StoreUnavailable,
)
from nextup.store.items import Item, Write, decode_cursor, encode_cursor, url_options

INDEX = "due"
TTL_ATTRIBUTE = "expires_at"
DEFAULT_SHARDS = 4
MAX_SHARDS = 64
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "nextup-local", "aws_secret_access_key": "nextup-local"}
CLIENT_CONFIG = Config(
    connect_timeout=1.0,
    read_timeout=3.0,
    retries={"mode": "standard", "total_max_attempts": 2},
    max_pool_connections=32,
)
# Why a transaction was cancelled, per item: these mean another writer got there first.
LOST = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
DONE = "done"
# Service models parsed once per process, however many clients are made (tests make many).
_LOADER = create_loader()


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
    resolver = create_credential_resolver(session)
    for name in ("container-role", "iam-role"):
        resolver.remove(name)
    return resolver.load_credentials() is not None


def make_client() -> Any:
    """A DynamoDB client from the standard AWS settings.

    With an endpoint on loopback (moto, DynamoDB Local) and no region or credentials
    configured, fall back to us-east-1 and dummy credentials: a local stack works out of
    the box, and a real endpoint is never called with made-up credentials.
    """
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    session = boto3.session.Session(botocore_session=core)
    endpoint = _configured_endpoint()
    local = endpoint is not None and _is_loopback(endpoint)
    # botocore reads AWS_DEFAULT_REGION and profiles; AWS_REGION (what Lambda and the other
    # SDKs set, and wins over AWS_DEFAULT_REGION there) it ignores.
    region = os.environ.get("AWS_REGION") or session.region_name
    kwargs: dict[str, Any] = {"config": CLIENT_CONFIG, "region_name": region}
    if region is None and local:
        kwargs["region_name"] = LOCAL_REGION
    if local and not _has_credentials(core):
        kwargs.update(LOCAL_CREDENTIALS)
    try:
        return session.client("dynamodb", **kwargs)
    except NoRegionError:
        raise ValueError(
            "no AWS region for DynamoDB: set AWS_REGION (or AWS_DEFAULT_REGION)"
        ) from None


def store_error(exc: ClientError | BotoCoreError, table: str) -> StoreError:
    """boto3's error as the store's: anything worth retrying is StoreUnavailable."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code == "ResourceNotFoundException":
            return StoreNotReady(
                f"DynamoDB table {table!r} does not exist: run "
                f"`nextup store init --store dynamodb://{table}`"
            )
        if code in STORE.statuses.errors or STORE.transient_status(status):
            return StoreUnavailable(f"DynamoDB is unavailable: {code or status}")
        return StoreError(f"DynamoDB refused: {code}: {error.get('Message', '')}")
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
        "data": {"S": json.dumps(item.data, separators=(",", ":"))},
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
        json.loads(attributes["data"]["S"]),
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

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise store_error(exc, self.table) from exc

    # -- lifecycle -----------------------------------------------------------------------

    def init(self) -> None:
        with self._errors():
            try:
                self._client.create_table(**table_definition(self.table))
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceInUseException":
                    raise
            self._client.get_waiter("table_exists").wait(
                TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
            )
            self._check_schema(self._client.describe_table(TableName=self.table)["Table"])
            self._enable_ttl()

    def _check_schema(self, table: dict[str, Any]) -> None:
        wanted = table_definition(self.table)
        indexes = {index["IndexName"]: index for index in table.get("GlobalSecondaryIndexes", [])}
        if table["KeySchema"] != wanted["KeySchema"] or INDEX not in indexes:
            raise StoreError(
                f"DynamoDB table {self.table!r} exists with another schema: it needs key "
                f"pk/sk and index {INDEX!r} (infra/dynamodb/table.yaml)"
            )

    def _enable_ttl(self) -> None:
        for _ in range(2):  # a concurrent init may enable it between our read and write
            ttl = self._client.describe_time_to_live(TableName=self.table)
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
                self._client.update_time_to_live(
                    TableName=self.table,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
                )
                return
            except ClientError as exc:
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
            except ClientError as exc:
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
            except ClientError as exc:
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
