"""The web app's input boundaries without a server: uploaded CSV files (hostile and random
bytes), row checks against the feature kinds, and the latency percentiles read from a real
prometheus_client histogram."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from apps.ui import server
from modules import features

HEADER = ",".join(features.RAW_FEATURE_KEYS)


def _row(**values: str) -> str:
    base = {k: "1" for k in features.RAW_FEATURE_KEYS} | {"payment_type": "Cash", "company": "x"}
    base.update(values)
    return ",".join(base[k] for k in features.RAW_FEATURE_KEYS)


@pytest.mark.parametrize(
    "value, reason",
    [
        ("abc", "is not an integer"),
        ("nan", "is not an integer"),
        ("-inf", "is not an integer"),
        ("1e400", "is not an integer"),
        ("2.5", "is not an integer"),
        ("99999999999999999999", "does not fit int64"),
        ("-9223372036854775809", "does not fit int64"),
        ("１２", "is not an integer"),  # full-width digits: modules/values.py takes ASCII only
        ("9223372036854775807", None),
    ],
)
def test_hostile_values_are_reported_with_their_line(value, reason):
    text = "\n".join([HEADER, _row(), "", _row(trip_start_hour=value), _row()]) + "\n"
    frame = server.read_upload(text.encode(), "t.csv")
    good, bad = server.check_rows(frame)
    if reason is None:
        assert len(good) == 3 and not bad
        return
    assert good == [0, 2]
    assert [b.line for b in bad] == [4]  # the blank line 3 still counts
    assert reason in bad[0].reason and "trip_start_hour" in bad[0].reason


def test_ragged_rows_are_bad_rows_not_errors():
    text = "\n".join([HEADER, _row() + ",extra", _row().rsplit(",", 2)[0], _row()])
    frame = server.read_upload(text.encode())
    good, bad = server.check_rows(frame)
    assert good == [2]
    assert [(b.line, b.reason.split(",")[0]) for b in bad] == [
        (2, f"{len(features.RAW_FEATURE_KEYS) + 1} values"),
        (3, f"{len(features.RAW_FEATURE_KEYS) - 2} values"),
    ]


def test_missing_values_are_left_to_the_model():
    frame = server.read_upload(f"{HEADER}\n{_row(fare='', company='')}\n".encode())
    assert server.check_rows(frame) == ([0], [])


@pytest.mark.parametrize("seed", range(200))
def test_random_bytes_give_a_frame_or_a_readable_error(seed):
    rng = random.Random(seed)
    alphabet = [b",", b"\n", b"\r", b'"', b"1", b"x", b"\xff", b"\x00", b" ", b"."] + [
        k.encode() for k in features.RAW_FEATURE_KEYS[:3]
    ]
    content = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
    if seed % 3 == 0:
        content = HEADER.encode() + b"\n" + content
    try:
        frame = server.read_upload(content, "fuzz.csv")
    except ValueError as e:
        assert str(e).startswith("fuzz.csv")
        return
    good, bad = server.check_rows(frame)
    assert sorted(good + [frame.attrs["lines"].index(b.line) for b in bad]) == list(
        range(len(frame))
    )


def test_latency_percentiles_match_the_histogram():
    registry = CollectorRegistry()
    h = Histogram(
        "tfserving_request_latency_seconds",
        "x",
        ["model_name", "version", "method", "protocol"],
        buckets=(0.001, 0.01, 0.1, 1.0),
        registry=registry,
    )
    for v in [0.0005] * 50 + [0.005] * 40 + [0.05] * 10:
        h.labels("taxi", "1", "predict", "rest").observe(v)
    from prometheus_client.parser import text_string_to_metric_families

    rows = [
        {**s.labels, "le": float(s.labels["le"]), "count": s.value}
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
        if s.name.endswith("_bucket")
    ]
    sample = server.MetricsSample(0.0, pd.DataFrame(), pd.DataFrame(rows))
    p = server.latency_percentiles(sample).iloc[0]
    assert p["requests"] == 100
    assert p["p50_ms"] == pytest.approx(1.0)  # rank 50 is the top of the first bucket
    assert p["p90_ms"] == pytest.approx(10.0)
    assert p["p99_ms"] == pytest.approx(10 + 90 * 0.9)
    assert all(math.isfinite(p[c]) for c in ("p50_ms", "p90_ms", "p99_ms"))


def test_mlops_ui_help_lists_the_store_and_server_flags():
    from click.testing import CliRunner

    from mlops.cli import main

    result = CliRunner().invoke(main, ["ui", "--help"])
    assert result.exit_code == 0, result.output
    for flag in (
        "--metadata",
        "--rest-port",
        "--grpc-port",
        "--start-server / --no-start-server",
        "--address",
        "--request-log-dir",
        "--labels",
    ):
        assert flag in result.output
    assert "127.0.0.1" in result.output  # binds to localhost unless told otherwise


# ---- numbers the model must never see (modules/values.py) ----------------------------------------
_FLOAT_KEYS = [k for k in features.RAW_FEATURE_KEYS if features.SPEC.raw_dtype(k) == "float"]
_INT_KEYS = [k for k in features.RAW_FEATURE_KEYS if features.SPEC.raw_dtype(k) == "int64"]


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e50", "-1e39", "1e400"])
def test_float_cells_that_float32_cannot_hold_are_refused_per_row(value):
    key = _FLOAT_KEYS[0]
    text = "\n".join([HEADER, _row(), _row(**{key: value})]) + "\n"
    good, bad = server.check_rows(server.read_upload(text.encode()))
    assert good == [0] and [b.line for b in bad] == [3]
    assert key in bad[0].reason and ("finite" in bad[0].reason or "NaN" in bad[0].reason)


_INVALID = st.one_of(
    st.tuples(
        st.sampled_from(_FLOAT_KEYS),
        st.one_of(
            st.sampled_from(["nan", "-nan", "inf", "+inf", "-Infinity", "1e39", "1e400"]),
            st.floats(min_value=3.41e38, allow_infinity=False).map(repr),
        ),
    ),
    st.tuples(
        st.sampled_from(_INT_KEYS),
        st.one_of(
            st.integers(min_value=2**63, max_value=2**90).map(str),
            st.integers(min_value=-(2**90), max_value=-(2**63) - 1).map(str),
            st.sampled_from(["nan", "inf", "1.5", "1e3"]),
        ),
    ),
)
_BOUNDARY = st.one_of(
    st.tuples(
        st.sampled_from(_FLOAT_KEYS),
        st.sampled_from(["3.4028234e38", "-3.4028234e38", "1e-45", "-0", "0"]),
    ),
    st.tuples(st.sampled_from(_INT_KEYS), st.sampled_from(["9223372036854775807", "-0", "0"])),
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.lists(_INVALID, max_size=2), st.lists(_BOUNDARY, max_size=2)),
        min_size=1,
        max_size=6,
    ),
    bom=st.booleans(),
)
def test_fuzz_rows_with_invalid_numbers_are_never_scored(rows, bom):
    """check_rows decides which rows score_frame sends: a row holding a non-finite or
    overflowing value never is (with a reason on its line), a row of boundary values always is."""
    lines = [HEADER]
    for invalid, boundary in rows:
        cells = dict(boundary)
        cells.update(dict(invalid))
        lines.append(_row(**cells))
    content = ("\n".join(lines) + "\n").encode()
    frame = server.read_upload((b"\xef\xbb\xbf" if bom else b"") + content)
    assert list(frame.columns) == list(features.RAW_FEATURE_KEYS)
    good, bad = server.check_rows(frame)
    for i, (invalid, _) in enumerate(rows):
        if invalid:
            assert i not in good
            assert any(b.line == i + 2 and invalid[-1][0] in b.reason for b in bad)
        else:
            assert i in good


# ---- the downloaded CSV --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cell, shown",
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-87.6", "-87.6"),  # a number stays a number
        ("+1e5", "+1e5"),
        ("-inf", "'-inf"),
        ("Cash", "Cash"),
        (0.25, 0.25),
    ],
)
def test_cells_a_spreadsheet_would_evaluate_are_neutralised(cell, shown):
    assert server.neutralise_cell(cell) == shown


def test_the_scored_csv_download_carries_no_formula():
    import csv
    import io

    frame = pd.DataFrame(
        {"company": ["=1+1", "@x", "Flash Cab"], "fare": ["-3.5", "-1+2", "12"], "=evil": "a"}
    )
    frame["probability"] = [0.1, 0.2, 0.9]
    rows = list(csv.reader(io.StringIO(server.scored_csv(frame).decode())))
    assert rows[0] == ["company", "fare", "'=evil", "probability"]
    assert [r[0] for r in rows[1:]] == ["'=1+1", "'@x", "Flash Cab"]
    assert [r[1] for r in rows[1:]] == ["-3.5", "'-1+2", "12"]
    assert [float(r[3]) for r in rows[1:]] == [0.1, 0.2, 0.9]
    for row in rows:
        for cell in row:
            assert not cell.startswith(server.FORMULA_STARTS) or float(cell) == float(cell)


def test_a_bom_in_the_upload_is_not_part_of_a_column_name():
    content = b"\xef\xbb\xbf" + f"{HEADER}\n{_row()}\n".encode()
    frame = server.read_upload(content)
    assert list(frame.columns)[0] == features.RAW_FEATURE_KEYS[0]
    assert server.check_rows(frame) == ([0], [])
