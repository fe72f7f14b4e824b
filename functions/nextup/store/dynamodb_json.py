"""A light DynamoDB client: the JSON 1.0 protocol over `http.client`, signed with SigV4.

Why: importing boto3 and building its client cost a function ~700 ms and ~20 MiB on its
first event, for the handful of calls the store makes. Every DynamoDB operation is the
same exchange (POST ``/``, ``X-Amz-Target: DynamoDB_20120810.<Operation>``, the request
and the answer in wire JSON), so this client speaks all of them with no service model:
``client.get_item(TableName=..., Key=...)`` is ``GetItem`` with those members, as on a
boto3 client, and answers the same dicts (wire JSON: attribute values as DynamoDB sends
them, ``B`` as base64 text, timestamps as epoch numbers) plus ``ResponseMetadata``.

A refusal raises `ServiceError`, shaped like botocore's ``ClientError`` (``.response``
with ``Error.Code``/``Message``, ``ResponseMetadata.HTTPStatusCode`` and the error's own
members such as ``CancellationReasons``); no answer raises `TransportError` with
botocore's words. Failures are retried once as boto3's standard mode does (the store's
callers retry on their own budget). boto3 stays the supported client: `store.dynamodb`
picks this one only for settings it reads exactly as botocore would.

Safe from several threads (the store's calls run in worker threads): each thread keeps
its own keep-alive connection.
"""

from __future__ import annotations

import http.client
import random
import select
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from nextup import jsontext
from nextup.store.sigv4 import Credentials, host_header, sign

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
SERVICE = "dynamodb"
# What boto3's standard retry mode retries besides 500/502/503/504 and transport errors.
RETRIED_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
# boto3 client attributes that are not operations: they need its models (waiters,
# paginators, modelled exception classes, presigning).
NOT_OPERATIONS = frozenset(
    {"get_waiter", "get_paginator", "can_paginate", "meta", "exceptions", "generate_presigned_url"}
)


class WireError(Exception):
    """The light client failed without an answer from DynamoDB."""


class TransportError(WireError):
    """No answer: refused, reset, timed out (botocore's ConnectionError and
    HTTPClientError, with their messages)."""


class ServiceError(Exception):
    """DynamoDB answered with an error: botocore's ``ClientError`` in shape."""

    def __init__(self, response: dict[str, Any], operation_name: str) -> None:
        error = response.get("Error", {})
        super().__init__(
            f"An error occurred ({error.get('Code', 'Unknown')}) when calling the "
            f"{operation_name} operation: {error.get('Message', 'Unknown')}"
        )
        self.response = response
        self.operation_name = operation_name


def operation_name(method: str) -> str:
    """boto3's method name as the operation: ``batch_get_item`` -> ``BatchGetItem``."""
    return "".join(part[:1].upper() + part[1:] for part in method.split("_"))


def error_response(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """An error answer as botocore parses it for the JSON protocols."""
    try:
        parsed = jsontext.loads(body) if body else {}
    except ValueError:
        parsed = {"message": body.decode("utf-8", "replace")}
    if not isinstance(parsed, dict):
        parsed = {}
    code = parsed.get("__type", str(status))
    code = code.split(":", 1)[0].rsplit("#", 1)[-1]
    response: dict[str, Any] = {
        key: value for key, value in parsed.items() if key not in ("__type", "message", "Message")
    }
    response["Error"] = {"Message": parsed.get("message", parsed.get("Message", "")), "Code": code}
    response["ResponseMetadata"] = _metadata(status, headers)
    return response


def _metadata(status: int, headers: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"HTTPStatusCode": status, "HTTPHeaders": headers}
    if "x-amzn-requestid" in headers:
        metadata["RequestId"] = headers["x-amzn-requestid"]
    return metadata


class DynamoJsonClient:
    """The low-level DynamoDB client interface over one endpoint, for static credentials."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Credentials,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        ca_bundle: str | None = None,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not a DynamoDB endpoint URL: {endpoint!r}")
        self.endpoint = endpoint
        self.url = f"{parts.scheme}://{parts.netloc}/"  # what is signed and named in errors
        self.region = region
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.ca_bundle = ca_bundle
        self._scheme = parts.scheme
        self._address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        self._host = host_header(endpoint)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[http.client.HTTPConnection] = set()
        self._ssl: Any = None

    def __repr__(self) -> str:
        return f"DynamoJsonClient({self.endpoint!r}, region={self.region!r})"

    def __getattr__(self, method: str) -> Any:
        """Any operation by boto3's method name (an attribute not found otherwise)."""
        if method.startswith("_") or method in NOT_OPERATIONS:
            raise AttributeError(f"{method!r}: not on the light DynamoDB client (use boto3)")
        operation = operation_name(method)

        def call(**params: Any) -> dict[str, Any]:
            return self.call(operation, params)

        call.__name__ = method
        self.__dict__[method] = call  # found directly from now on
        return call

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        body = jsontext.dumps(params)
        attempt = 0
        while True:
            attempt += 1
            try:
                status, headers, answer = self._exchange(operation, body)
            except TransportError:
                if attempt >= self.max_attempts:
                    raise
                self._backoff(attempt)
                continue
            if status == 200:
                try:
                    parsed = jsontext.loads(answer) if answer else {}
                except ValueError:
                    raise WireError(f"DynamoDB answered {operation} with no JSON") from None
                parsed["ResponseMetadata"] = {
                    **_metadata(status, headers),
                    "RetryAttempts": attempt - 1,
                }
                return parsed
            response = error_response(status, headers, answer)
            response["ResponseMetadata"]["RetryAttempts"] = attempt - 1
            retried = status in RETRIED_STATUSES or response["Error"]["Code"] in RETRIED_CODES
            if not retried or attempt >= self.max_attempts:
                raise ServiceError(response, operation)
            self._backoff(attempt)

    @staticmethod
    def _backoff(attempt: int) -> None:
        # boto3's standard mode: a random delay up to 2**(attempt-1) seconds, at most 20.
        time.sleep(min(random.random() * 2 ** (attempt - 1), 20.0))

    def _exchange(self, operation: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation}
        headers.update(
            sign(
                "POST",
                self.url,
                headers,
                body,
                credentials=self.credentials,
                region=self.region,
                service=SERVICE,
                now=datetime.now(UTC),
            )
        )
        headers["Content-Length"] = str(len(body))
        connection = self._connection()
        try:
            connection.request("POST", "/", body, headers)
            response = connection.getresponse()
            answer = response.read()
        except TimeoutError:
            self._drop(connection)
            raise TransportError(f'Read timeout on endpoint URL: "{self.url}"') from None
        except (http.client.HTTPException, OSError):
            self._drop(connection)
            raise TransportError(
                "Connection was closed before we received a valid response from endpoint "
                f'URL: "{self.url}".'
            ) from None
        if response.will_close:
            self._drop(connection)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, answer

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's connection: kept alive, replaced when the server closed it."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and connection.sock is not None:
            if not _dropped(connection.sock):
                return connection
            self._drop(connection)
        host, port = self._address
        if self._scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.connect_timeout, context=self._tls()
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        try:
            connection.connect()
        except TimeoutError:
            raise TransportError(f'Connect timeout on endpoint URL: "{self.url}"') from None
        except OSError:
            raise TransportError(f'Could not connect to the endpoint URL: "{self.url}"') from None
        connection.sock.settimeout(self.read_timeout)
        self._local.connection = connection
        with self._lock:
            self._connections.add(connection)
        return connection

    def _tls(self) -> Any:
        """botocore's trust: AWS_CA_BUNDLE, else certifi's bundle when installed, else the
        system's."""
        if self._ssl is None:
            import ssl

            cafile = self.ca_bundle
            if cafile is None:
                try:
                    import certifi

                    cafile = certifi.where()
                except ImportError:
                    pass
            self._ssl = ssl.create_default_context(cafile=cafile)
        return self._ssl

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        with self._lock:
            self._connections.discard(connection)
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            connection.close()


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle kept-alive connection was closed by the server (readable means EOF
    or garbage: either way it cannot carry the next request), as urllib3 checks."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
