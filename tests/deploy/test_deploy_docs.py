"""docs/DEPLOY.md names only files, targets and versions that exist."""

from __future__ import annotations

import re

from deploy_helpers import PINNED, ROOT, versions

DOC = (ROOT / "docs" / "DEPLOY.md").read_text()
PATH = re.compile(r"`((?:infra|eventing|functions|tests|docs)/[\w./-]*|Dockerfile|stack\.yml)`")


def test_every_path_the_guide_names_exists() -> None:
    paths = set(PATH.findall(DOC))
    assert len(paths) > 20
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert not missing, missing


def test_every_make_target_the_guide_names_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"make (kind-[a-z]+|test|dev)\b", DOC)):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_the_version_table_matches_versions_env() -> None:
    pinned = versions()
    for key in sorted(PINNED - {"KIND_NODE_IMAGE"}):  # the node image: by digest, below
        assert pinned[key] in DOC, key
    node = pinned["KIND_NODE_IMAGE"]
    assert node.split("@")[0] in DOC and node[-4:] in DOC
