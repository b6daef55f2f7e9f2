"""The web app's input boundaries without a server: uploaded CSV files (hostile and random
bytes), row checks against the feature kinds, and the latency percentiles read from a real
prometheus_client histogram."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest
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
        ("abc", "is not a number"),
        ("nan", "is not a finite number"),
        ("-inf", "is not a finite number"),
        ("1e400", "is not a finite number"),
        ("2.5", "is not an integer"),
        ("99999999999999999999", "out of the int64 range"),
        ("１２", None),  # full-width digits: Python's float() reads them, so does the encoder
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
