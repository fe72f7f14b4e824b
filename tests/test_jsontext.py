"""`nextup.jsontext`: what nextup writes it reads back unchanged, and so does the standard
library (a store written by an older nextup, or read by a tool, stays readable), for any
JSON value, lone surrogates included (JSON input may spell them, so a title may hold one)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from nextup import jsontext

# Text with lone surrogates in it, as `json.loads('"\\ud800"')` produces.
texts = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF))
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@given(values)
def test_what_is_written_reads_back_the_same_by_both_readers(value) -> None:
    written = jsontext.dumps(value)
    assert jsontext.loads(written) == value
    assert json.loads(written) == value
    assert jsontext.dumps_text(value) == written.decode()


@given(values)
def test_it_reads_what_the_standard_library_wrote(value) -> None:
    assert jsontext.loads(json.dumps(value)) == value


def test_a_lone_surrogate_is_written_escaped_so_it_always_encodes() -> None:
    title = json.loads('"plant \\ud800"')
    written = jsontext.dumps({"title": title})
    assert written == b'{"title":"plant \\ud800"}'
    assert jsontext.loads(written) == {"title": title}


def test_types_json_does_not_know_go_through_default() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    assert jsontext.loads(jsontext.dumps({"x": Odd()}, default=str)) == {"x": "odd"}
