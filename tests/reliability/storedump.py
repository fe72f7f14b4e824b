"""A full dump of a store's table, to prove that something changed nothing."""

from __future__ import annotations

import json
import sqlite3
from urllib.parse import urlsplit


def dump(store_url: str) -> list[tuple]:
    """Every item as (pk, sk, data, version, due, expires_at), sorted by key."""
    if store_url.startswith("sqlite:"):
        path = urlsplit(store_url).path[1:]
        with sqlite3.connect(path) as conn:
            rows = conn.execute(
                "SELECT pk, sk, data, version, due, expires_at FROM items ORDER BY pk, sk"
            ).fetchall()
        return [tuple(row) for row in rows]
    from nextup.store.dynamodb import make_boto3_client

    table = urlsplit(store_url).netloc
    client = make_boto3_client()  # a paginated scan: a test tool, not the function path
    rows = []
    try:
        for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for item in page["Items"]:
                rows.append(
                    (
                        item["pk"]["S"],
                        item["sk"]["S"],
                        json.loads(item["data"]["S"]),
                        int(item["version"]["N"]),
                        item.get("due", {}).get("S"),
                        item.get("expires_at", {}).get("N"),
                    )
                )
    finally:
        client.close()
    return [(pk, sk, json.dumps(d, sort_keys=True), *rest) for pk, sk, d, *rest in sorted(rows)]
