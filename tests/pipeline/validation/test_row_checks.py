"""The RowCleaner's per-row checks against the committed curated schema: each reason, type
repair, and hostile values (NaN, inf, huge ints, empty strings, unicode, missing features, other
kinds) that must always end clean or with a reason, never in an exception."""

from __future__ import annotations

import math

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from hypothesis import given, settings
from hypothesis import strategies as st

from modules import values as valid_values
from pipeline.config import PipelineConfig
from pipeline.validation import row_checks
from pipeline.validation.row_checks import RowChecker

SCHEMA = tfdv.load_schema_text(PipelineConfig().schema_path)
CHECKER = RowChecker(SCHEMA)
# A row as CsvExampleGen writes span 1's first complete rows (schema kinds per column).
GOOD = {
    "pickup_community_area": [60],
    "fare": [27.05],
    "trip_start_month": [10],
    "trip_start_hour": [2],
    "trip_start_day": [3],
    "trip_start_timestamp": [1380593700],
    "pickup_latitude": [41.836],
    "pickup_longitude": [-87.648],
    "dropoff_latitude": [],
    "dropoff_longitude": [],
    "trip_miles": [12.6],
    "pickup_census_tract": [],
    "dropoff_census_tract": [],
    "payment_type": [b"Cash"],
    "company": [b"Taxi Affiliation Services"],
    "trip_seconds": [1380],
    "dropoff_community_area": [],
    "tips": [0.0],
}
KINDS = {f.name: row_checks._KINDS[f.type] for f in SCHEMA.feature}


def example(row: dict, kinds: dict | None = None) -> tf.train.Example:
    """A tf.Example of `row`, each feature of its schema kind unless `kinds` says otherwise."""
    kinds = {**KINDS, **(kinds or {})}
    ex = tf.train.Example()
    for name, values in row.items():
        feature = ex.features.feature[name]
        kind = kinds.get(name) or _kind_of(values)
        getattr(feature, kind).SetInParent()
        getattr(feature, kind).value.extend(values)
    return ex


def _kind_of(values) -> str:
    if values and isinstance(values[0], bytes):
        return "bytes_list"
    if values and isinstance(values[0], float):
        return "float_list"
    return "int64_list"


def reasons(row: dict, kinds: dict | None = None) -> list[tuple[str, str]]:
    clean, violations = CHECKER.check(example(row, kinds))
    assert (clean is None) == bool(violations)
    return [(v.feature, v.reason) for v in violations]


def test_a_good_row_is_clean_and_unchanged():
    ex = example(GOOD)
    clean, violations = CHECKER.check(tf.train.Example.FromString(ex.SerializeToString()))
    assert violations == [] and clean == ex


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"fare": []}, ("fare", row_checks.MISSING_VALUE)),
        ({"payment_type": []}, ("payment_type", row_checks.MISSING_VALUE)),
        ({"payment_type": [b"Bitcoin"]}, ("payment_type", row_checks.OUT_OF_DOMAIN)),
        ({"payment_type": [b""]}, ("payment_type", row_checks.OUT_OF_DOMAIN)),
        ({"trip_start_hour": [24]}, ("trip_start_hour", row_checks.OUT_OF_RANGE)),
        ({"trip_start_month": [0]}, ("trip_start_month", row_checks.OUT_OF_RANGE)),
        ({"fare": [-3.5]}, ("fare", row_checks.OUT_OF_RANGE)),
        ({"pickup_latitude": [51.5]}, ("pickup_latitude", row_checks.OUT_OF_RANGE)),
        ({"fare": [math.nan]}, ("fare", row_checks.OUT_OF_RANGE)),
        ({"pickup_latitude": [math.inf]}, ("pickup_latitude", row_checks.OUT_OF_RANGE)),
        ({"fare": [-math.inf]}, ("fare", row_checks.OUT_OF_RANGE)),
        ({"trip_start_day": [1, 2]}, ("trip_start_day", row_checks.TOO_MANY_VALUES)),
    ],
)
def test_each_reason(change, expected):
    assert reasons({**GOOD, **change}) == [expected]


def test_a_feature_absent_from_the_example_counts_as_missing_only_when_required():
    assert reasons({k: v for k, v in GOOD.items() if k != "tips"}) == [
        ("tips", row_checks.MISSING_VALUE)
    ]
    assert reasons({k: v for k, v in GOOD.items() if k != "company"}) == []


def test_wrong_types_are_repaired_when_the_value_parses_and_quarantined_when_not():
    # A text cell made CsvExampleGen type the whole column BYTES: numbers in it parse back.
    clean, violations = CHECKER.check(
        example(
            {**GOOD, "trip_seconds": [b" 1380 "], "fare": [b"27.05"]},
            {"fare": "bytes_list", "trip_seconds": "bytes_list"},
        )
    )
    assert violations == []
    assert list(clean.features.feature["trip_seconds"].int64_list.value) == [1380]
    assert clean.features.feature["fare"].float_list.value[0] == pytest.approx(27.05)
    # An empty cell of such a column becomes an empty list of the schema's kind.
    clean, _ = CHECKER.check(
        example({**GOOD, "pickup_census_tract": []}, {"pickup_census_tract": "bytes_list"})
    )
    assert clean.features.feature["pickup_census_tract"].WhichOneof("kind") == "int64_list"
    # An integral float is an int; ints are floats.
    clean, _ = CHECKER.check(
        example(
            {**GOOD, "trip_start_hour": [5.0], "fare": [27]},
            {"trip_start_hour": "float_list", "fare": "int64_list"},
        )
    )
    assert list(clean.features.feature["trip_start_hour"].int64_list.value) == [5]
    assert list(clean.features.feature["fare"].float_list.value) == [27.0]
    for bad in ([b"twelve"], [b"1e400x"]):
        assert reasons({**GOOD, "trip_seconds": bad}, {"trip_seconds": "bytes_list"}) == [
            ("trip_seconds", row_checks.WRONG_TYPE)
        ]
    assert reasons({**GOOD, "trip_seconds": [2.5]}, {"trip_seconds": "float_list"}) == [
        ("trip_seconds", row_checks.WRONG_TYPE)
    ]
    assert reasons(
        {**GOOD, "trip_seconds": [b"99999999999999999999"]}, {"trip_seconds": "bytes_list"}
    ) == [("trip_seconds", row_checks.WRONG_TYPE)]
    assert reasons({**GOOD, "fare": [b"abc"]}, {"fare": "bytes_list"}) == [
        ("fare", row_checks.WRONG_TYPE)
    ]


def test_every_violation_of_a_row_is_listed_and_reads_as_one_line():
    clean, violations = CHECKER.check(
        example({**GOOD, "fare": [-1.0], "payment_type": [b"Bitcoin"], "tips": []})
    )
    assert clean is None
    assert [str(v) for v in violations] == [
        "fare: out_of_range (-1.0 < min 0)",
        "payment_type: out_of_domain ('Bitcoin' not in the domain)",
        "tips: missing_value (required)",
    ]


def test_serialized_rows_come_back_deterministic_and_garbage_is_a_reason():
    record = example(GOOD).SerializeToString()
    clean, violations = CHECKER.check_serialized(record)
    assert violations == [] and clean == example(GOOD).SerializeToString(deterministic=True)
    assert CHECKER.check_serialized(b"\xff\x00garbage")[1][0].feature == row_checks.ROW


def test_batches_decide_like_rows_and_pass_clean_rows_through_as_read():
    rows = [
        {**GOOD, "fare": [-1.0]},
        GOOD,
        {**GOOD, "payment_type": [b"Bitcoin"]},
        {**GOOD, "pickup_latitude": [math.nan]},
        {**GOOD, "trip_start_day": [1, 2]},
        {k: v for k, v in GOOD.items() if k != "tips"},
        {**GOOD, "fare": [1e30]},
    ]
    records = [example(r).SerializeToString(deterministic=True) for r in rows]
    assert CHECKER.check_batch(records) == [CHECKER.check_serialized(r) for r in records]
    # A wrong kind anywhere in the batch: every row is checked one by one (and repaired).
    mixed = records + [example({**GOOD, "trip_seconds": [b"60"]}, {"trip_seconds": "bytes_list"})]
    mixed[-1] = mixed[-1].SerializeToString()
    assert CHECKER.check_batch(mixed) == [CHECKER.check_serialized(r) for r in mixed]
    assert CHECKER.check_batch(mixed)[-1][0] is not None


def test_environment_and_domains_follow_the_schema():
    # tips is not in SERVING: a serving checker does not require it.
    serving = RowChecker(SCHEMA, environment="SERVING")
    assert "tips" not in {r.name for r in serving.rules}
    assert "tips" in {r.name for r in CHECKER.rules}
    payment = next(r for r in CHECKER.rules if r.name == "payment_type")
    assert b"Credit Card" in payment.allowed and payment.required


_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)
_TEXT = st.one_of(
    st.text(max_size=12).map(lambda s: s.encode("utf-8")),
    st.binary(max_size=12),
    st.sampled_from([b"", b" ", b"nan", b"inf", b"-0", b"1e999", b"Cash", "Caf\u00e9".encode()]),
)


@st.composite
def hostile_rows(draw):
    """A row where any feature may be absent, empty, of any kind, with any values."""
    row, kinds = {}, {}
    for name in GOOD:
        choice = draw(st.sampled_from(["keep", "absent", "empty", "ints", "floats", "bytes"]))
        if choice == "keep":
            row[name] = GOOD[name]
        elif choice == "empty":
            row[name] = []
        elif choice == "ints":
            values = draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3))
            row[name], kinds[name] = values, "int64_list"
        elif choice == "floats":
            values = draw(st.lists(st.floats(width=32), max_size=3))
            row[name], kinds[name] = values, "float_list"
        elif choice == "bytes":
            values = draw(
                st.lists(st.one_of(_TEXT, _NUMBERS.map(lambda n: str(n).encode())), max_size=3)
            )
            row[name], kinds[name] = values, "bytes_list"
    extra = draw(
        st.dictionaries(st.text(min_size=1, max_size=8), st.lists(_TEXT, max_size=2), max_size=2)
    )
    for name, values in extra.items():
        if name not in row:
            row[name], kinds[name] = values, "bytes_list"
    return row, kinds


@settings(max_examples=80, deadline=None)
@given(hostile_rows())
def test_hostile_rows_are_clean_or_have_a_reason_never_an_exception(case):
    row, kinds = case
    record = example(row, kinds).SerializeToString()
    clean, violations = CHECKER.check_serialized(record)
    assert (clean is None) != (not violations)
    # The batched (Arrow) path comes to the same verdict, alone and among good rows.
    good = example(GOOD).SerializeToString(deterministic=True)
    batched = CHECKER.check_batch([good, record, good])
    assert [v for _, v in batched] == [[], violations, []]
    assert batched[0] == (good, [])
    assert all(v.reason in row_checks.REASONS and str(v) for v in violations)
    if clean is not None:
        # A clean row has every schema feature in the schema's kind and passes again unchanged.
        parsed = tf.train.Example.FromString(clean)
        for rule in CHECKER.rules:
            if rule.name in parsed.features.feature:
                assert parsed.features.feature[rule.name].WhichOneof("kind") == rule.kind
        assert CHECKER.check_serialized(clean) == (clean, [])
        # And its values are what a row of the schema may hold: every float a valid number.
        for rule in CHECKER.rules:
            if rule.kind == "float_list" and rule.name in parsed.features.feature:
                for v in parsed.features.feature[rule.name].float_list.value:
                    assert valid_values.float_problem(v) is None
        as_json = row_checks.example_to_json(parsed)
        for rule in CHECKER.rules:
            if rule.required:
                assert as_json.get(rule.name)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(record):
    clean, violations = CHECKER.check_serialized(record)
    assert (clean is None) != (not violations)
    assert CHECKER.check_batch([record]) == [(clean, violations)]


# ---- values that are no valid number (modules/values.py): quarantined whatever the domain -------
@pytest.mark.parametrize(
    "row, kinds",
    [
        ({"fare": [math.inf]}, None),  # fare has a min but no max: +inf used to count as clean
        ({"tips": [math.inf]}, None),
        ({"trip_miles": [math.nan]}, None),
        ({"fare": [b"1e50"]}, {"fare": "bytes_list"}),  # inf once in float32
        ({"fare": [b"1e400"]}, {"fare": "bytes_list"}),
        ({"tips": [b"inf"]}, {"tips": "bytes_list"}),
        ({"tips": [b"NaN"]}, {"tips": "bytes_list"}),
        ({"trip_seconds": [b"9223372036854775808"]}, {"trip_seconds": "bytes_list"}),
        ({"trip_start_timestamp": [float(2**64)]}, {"trip_start_timestamp": "float_list"}),
    ],
)
def test_non_finite_and_overflowing_values_are_quarantined_with_the_reason(row, kinds):
    record = example({**GOOD, **row}, kinds).SerializeToString()
    (name,) = row
    for clean, violations in (CHECKER.check_serialized(record), CHECKER.check_batch([record])[0]):
        assert clean is None
        assert [v.feature for v in violations] == [name]
        assert violations[0].reason in (row_checks.OUT_OF_RANGE, row_checks.WRONG_TYPE)
        assert any(w in violations[0].detail for w in ("finite", "NaN", "int64", "integer"))


@pytest.mark.parametrize(
    "text",
    [b"3.4028234e38", b"0", b"-0", b"1e-45", b"123.5"],  # float32 max and small values
)
def test_boundary_values_that_float32_holds_stay_clean(text):
    record = example({**GOOD, "tips": [text]}, {"tips": "bytes_list"}).SerializeToString()
    clean, violations = CHECKER.check_serialized(record)
    assert violations == [] and clean is not None


_INVALID_FLOATS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]).map(lambda v: ("float_list", v)),
    st.sampled_from(
        [b"nan", b"NaN", b"inf", b"-Infinity", b"1e39", b"-1e39", b"1e50", b"1e400", b"3.5e38"]
    ).map(lambda v: ("bytes_list", v)),
    st.floats(min_value=3.41e38, allow_infinity=True).map(
        lambda v: ("bytes_list", repr(v).encode())
    ),
)
_FLOAT_FEATURES = [r.name for r in CHECKER.rules if r.kind == "float_list"]


@settings(max_examples=150, deadline=None)
@given(
    hostile_rows(),
    st.sampled_from(_FLOAT_FEATURES),
    _INVALID_FLOATS,
)
def test_rows_with_an_invalid_number_are_never_clean(case, feature, invalid):
    """Whatever else the row holds, one non-finite or float32-overflowing value in a float
    feature keeps it out of the cleaned examples, on the row path and the batched path."""
    row, kinds = case
    kind, value = invalid
    row, kinds = {**row, feature: [value]}, {**kinds, feature: kind}
    record = example(row, kinds).SerializeToString()
    good = example(GOOD).SerializeToString(deterministic=True)
    assert CHECKER.check_serialized(record)[0] is None
    assert [c is None for c, _ in CHECKER.check_batch([good, record, good])] == [
        False,
        True,
        False,
    ]


@st.composite
def rows_of_schema_kinds(draw):
    """A row whose features all have the schema's kinds (so its batch takes the column path,
    not the row-by-row fallback) but hostile values: non-finite or out-of-range numbers, missing
    or extra values, strings outside the domain, unknown features."""
    row = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=4, unique=True)):
        kind = KINDS[name]
        if kind == "float_list":
            values = st.floats(width=32, allow_nan=True, allow_infinity=True)
        elif kind == "int64_list":
            values = st.integers(-(2**63), 2**63 - 1)
        else:
            values = _TEXT
        row[name] = draw(st.lists(values, max_size=3))
    if draw(st.booleans()):
        row = {k: v for k, v in row.items() if k != draw(st.sampled_from(sorted(GOOD)))}
    extra = draw(st.dictionaries(st.text(min_size=1, max_size=8), st.lists(_TEXT, max_size=2)))
    return {**{k: v for k, v in extra.items() if k not in row}, **row}


@settings(max_examples=60, deadline=None)
@given(st.lists(rows_of_schema_kinds(), min_size=1, max_size=8))
def test_column_checks_flag_every_row_the_row_check_rejects(rows):
    """suspects() is the fast path's filter: a row it does not flag is passed as read, so it
    must flag every row check_serialized rejects or would rewrite."""
    records = [example(r).SerializeToString(deterministic=True) for r in rows]
    suspect = CHECKER.suspects(records)
    for record, flagged in zip(records, suspect.tolist(), strict=True):
        clean, _ = CHECKER.check_serialized(record)
        if not flagged:
            assert clean == record
    assert CHECKER.check_batch(records) == [CHECKER.check_serialized(r) for r in records]


def test_a_row_protobuf_refuses_is_not_passed_by_the_column_path():
    """TensorFlow's parser takes a feature name that is not UTF-8; protobuf does not ("not a
    tf.Example"), so the batch path must not pass that row as clean."""
    good = example(GOOD).SerializeToString(deterministic=True)
    extra = example({**GOOD, "zzzz": [b"x"]}).SerializeToString(deterministic=True)
    broken = extra.replace(b"zzzz", b"z\xffzz")
    assert CHECKER.check_serialized(broken) == (
        None,
        [row_checks.Violation(row_checks.ROW, row_checks.WRONG_TYPE, "not a tf.Example")],
    )
    assert CHECKER.suspects([good, broken]).tolist() == [False, True]
    assert CHECKER.check_batch([good, broken]) == [(good, []), CHECKER.check_serialized(broken)]
