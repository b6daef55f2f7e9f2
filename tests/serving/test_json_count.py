"""serving/json_count.py: the byte-level count of a body's top-level arrays equals what the parsed
body holds, for bodies whose strings are full of quotes, backslashes and brackets, split into
chunks anywhere (property test), and an over-limit count stops early."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import json_count
from serving.errors import ServingError
from serving.limits import RequestLimits

KEYS = (b"examples", b"instances")
_TEXT = st.text(alphabet=st.sampled_from('ab"\\[]{},: \n\t\u00e9'), max_size=8)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=12,
)
_BODIES = st.dictionaries(
    st.sampled_from(["examples", "instances", "context", "signature_name", 'x"examples', "a,b"]),
    _VALUES | st.lists(_VALUES, max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(body=_BODIES, chunk=st.integers(1, 40), indent=st.sampled_from([None, 0, 2]))
def test_counts_equal_the_parsed_body(monkeypatch_module, body, chunk, indent):
    raw = json.dumps(body, indent=indent, ensure_ascii=bool(chunk % 2)).encode()
    monkeypatch_module.setattr(json_count, "CHUNK", chunk)
    want = {
        k.encode(): len(v) or 1
        for k, v in body.items()
        if k.encode() in KEYS and isinstance(v, list)
    }
    assert json_count.top_level_counts(raw, KEYS) == want


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_an_over_limit_body_is_refused_after_the_first_chunk(monkeypatch):
    raw = json.dumps({"examples": [{}] * 50_000}).encode()
    monkeypatch.setattr(json_count, "CHUNK", 1024)
    counts = json_count.top_level_counts(raw, KEYS, stop_above=100)
    assert 100 < counts[b"examples"] < 1024  # one chunk's items, not the body's 50,000
    with pytest.raises(ServingError, match=r"'examples': at least \d+ elements exceed the limit"):
        RequestLimits(max_elements=100).check_json_body(raw, ("examples",))
    RequestLimits(max_elements=50_000).check_json_body(raw, ("examples",))  # at the limit: fine


@settings(max_examples=300, deadline=None)
@given(body=_BODIES, chunk=st.integers(1, 40), slice_bytes=st.integers(1, 30))
def test_sliced_parse_equals_one_parse(monkeypatch_module, body, chunk, slice_bytes):
    raw = json.dumps(body, ensure_ascii=bool(chunk % 2)).encode()
    monkeypatch_module.setattr(json_count, "CHUNK", chunk)
    pauses = []
    for key in KEYS:
        got = json_count.loads_in_slices(raw, key, slice_bytes, pause=lambda: pauses.append(1))
        assert got == orjson.loads(raw)


_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
    | st.builds(lambda t: {"b64": t}, _TEXT)
)
_TENSOR = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=4), max_leaves=20)
_INPUTS = st.dictionaries(_TEXT, _TENSOR, max_size=4) | st.lists(_TENSOR, max_size=4)


def _leaves(value) -> int:
    """What RequestLimits.check_json_values counts: a list's leaves, anything else is one."""
    if isinstance(value, list):
        return sum(map(_leaves, value))
    return 1


@settings(max_examples=300, deadline=None)
@given(inputs=_INPUTS, other=_VALUES, chunk=st.integers(1, 40), indent=st.sampled_from([None, 1]))
def test_columnar_inputs_are_counted_as_the_limits_count_them(
    monkeypatch_module, inputs, other, chunk, indent
):
    body = {"signature_name": 'a,:"inputs', "inputs": inputs, "context": other}
    raw = json.dumps(body, indent=indent, ensure_ascii=bool(chunk % 2)).encode()
    monkeypatch_module.setattr(json_count, "CHUNK", chunk)
    want = sum(map(_leaves, inputs.values())) if isinstance(inputs, dict) else _leaves(inputs)
    counts = json_count.top_level_counts(raw, (), leaf_keys=(b"inputs",))
    assert counts.get(b"inputs", 0) == want
