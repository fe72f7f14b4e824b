"""Read and re-drive the events in the dead-letter topic (stdlib only; see docs/DEPLOY.md).

infra/kind/dead-letters.sh feeds this the output of

    kafka-console-consumer.sh --topic nextup-dead-letters --property print.headers=true \
        --property headers.separator='|'

one record a line: `name:value|name:value<TAB>data`. The KafkaSink stores each event in binary
mode, attributes as `ce_` headers, plus the three the broker's dispatcher adds when it gives up:
knativeerrordest (where it was going), knativeerrorcode (the last HTTP status) and
knativeerrordata (the start of the answer, base64, at most 1024 bytes).

    python3 deadletters.py list            # one JSON object per dead letter, error decoded
    python3 deadletters.py redrive --url URL   # POST each event, error attributes removed

Re-driving is safe: the functions deduplicate on source + id, so an event that did reach some
of its consumers is answered by them as the duplicate it is.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

ERROR_ATTRIBUTES = ("knativeerrordest", "knativeerrorcode", "knativeerrordata")
HEADER_SEPARATOR = "|"


@dataclass(frozen=True)
class DeadLetter:
    attributes: dict[str, str]  # CloudEvents attributes, `ce_` prefix removed
    content_type: str | None
    data: str

    @property
    def error(self) -> dict[str, str | None]:
        encoded = self.attributes.get("knativeerrordata")
        try:
            answer = base64.b64decode(encoded).decode("utf-8", "replace") if encoded else None
        except (binascii.Error, ValueError):
            answer = encoded
        return {
            "destination": self.attributes.get("knativeerrordest"),
            "status": self.attributes.get("knativeerrorcode"),
            "answer": answer,
        }

    def describe(self) -> dict[str, object]:
        kept = {k: v for k, v in self.attributes.items() if k not in ERROR_ATTRIBUTES}
        return {"event": kept, "error": self.error, "data": self.data}

    def http_headers(self) -> dict[str, str]:
        """The event in HTTP binary mode, as it was before it failed."""
        headers = {
            f"ce-{name}": value
            for name, value in self.attributes.items()
            if name not in ERROR_ATTRIBUTES
        }
        if self.content_type:
            headers["content-type"] = self.content_type
        return headers


def parse(line: str) -> DeadLetter | None:
    """One consumer line; None for lines that are not records (blank, or the tool's notes)."""
    line = line.rstrip("\r\n")
    head, tab, data = line.partition("\t")
    if not tab:
        return None
    attributes: dict[str, str] = {}
    content_type = None
    for header in head.split(HEADER_SEPARATOR):
        name, colon, value = header.partition(":")
        if not colon:
            continue
        name = name.strip().lower()
        if name.startswith("ce_"):
            attributes[name[3:]] = value
        elif name == "content-type":
            content_type = value
    if not {"id", "source", "type", "specversion"} <= set(attributes):
        return None
    return DeadLetter(attributes, content_type, data)


def records(lines: Iterable[str]) -> Iterator[DeadLetter]:
    for line in lines:
        letter = parse(line)
        if letter is not None:
            yield letter


def redrive(letter: DeadLetter, url: str, timeout: float = 10.0) -> int:
    request = urllib.request.Request(
        url, data=letter.data.encode(), headers=letter.http_headers(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print each dead letter as JSON, its error decoded")
    again = commands.add_parser("redrive", help="POST each dead letter to the broker again")
    again.add_argument("--url", required=True, help="the broker's address")
    args = parser.parse_args(argv)
    failed = 0
    for letter in records(sys.stdin):
        if args.command == "list":
            print(json.dumps(letter.describe(), sort_keys=True))
            continue
        status = redrive(letter, args.url)
        event = f"{letter.attributes['type']} {letter.attributes['id']}"
        print(f"{status} {event}", file=sys.stderr)
        failed += not 200 <= status < 300
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
