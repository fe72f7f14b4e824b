"""`make generate`: write every file that follows from the function declarations.

    python -m nextup_dev.generate            # write what changed, say which
    python -m nextup_dev.generate --check    # write nothing; exit 1 naming what is stale

The checkout is the working directory, or `--root`. What is rendered, and from what, is
in `nextup_dev.render`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nextup_dev.render import render, strays


def stale(root: Path) -> tuple[dict[str, str], list[str]]:
    """The rendered files whose committed text differs (path -> rendered text), and the
    files of functions no longer declared."""
    rendered = render(root)
    changed = {
        path: text
        for path, text in rendered.items()
        if not (root / path).is_file() or (root / path).read_text() != text
    }
    return changed, strays(root, rendered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nextup_dev.generate", description=__doc__)
    parser.add_argument("--root", default=".", help="the checkout (default: here)")
    parser.add_argument("--check", action="store_true", help="only say what is stale")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    if not (root / "pyproject.toml").is_file() or not (root / "functions").is_dir():
        print(f"{root} is not a nextup checkout (pyproject.toml, functions/)", file=sys.stderr)
        return 2
    changed, extra = stale(root)
    if args.check:
        for path in changed:
            print(f"stale: {path}")
        for path in extra:
            print(f"not declared: {path}")
        if changed or extra:
            print("run `make generate`", file=sys.stderr)
        return 1 if changed or extra else 0
    for path, text in changed.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {path}")
    for path in extra:
        print(f"not declared any more, delete it: {path}", file=sys.stderr)
    if not changed:
        print("everything is up to date")
    return 1 if extra else 0


if __name__ == "__main__":
    sys.exit(main())
