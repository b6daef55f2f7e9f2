"""`mlops data check-skew` at the statistics level: request logs written the way the model
server writes them (serving.request_log.RequestLog, tf.Examples from serving_api.client), training
statistics generated from the training rows with the pipeline's StatisticsGen options.

Replaying the training rows reports no skew; a shifted replay is skew; unreadable records are
skipped and reported, not fatal; exit codes 0 / 1 / 2 = no skew / skew / could not run.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.drift_calibration import SCHEMA, SHIFTS, read_rows
from cli_support import Exit
from data_stats import measures as drift_measures
from mlops.cli import main as mlops_main
from pipeline.ingest import spans

TRAINING_ROWS = 3000


@pytest.fixture(scope="module")
def training(tmp_path_factory) -> tuple[list[dict], str]:
    """(training rows, their FeatureStats.pb)."""
    rows = random.Random(3).sample(read_rows(), TRAINING_ROWS)
    examples = drift_measures.examples_from_rows(rows, spans.schema_columns(str(SCHEMA)))
    stats = drift_measures.statistics_of_examples(examples)
    path = tmp_path_factory.mktemp("training") / "FeatureStats.pb"
    path.write_bytes(stats.SerializeToString())
    return rows, str(path)


def _log(directory: Path, rows: list[dict], extra: list[bytes] = ()) -> Path:
    """Log rows as the server does for serving_default requests, in batches of 100; `extra`
    raw records are appended to the last file as they are (a broken client, a bad disk)."""
    from serving.request_log import RequestLog
    from serving_api.client import encode_example

    log = RequestLog(str(directory), max_records=1000)
    for start in range(0, len(rows), 100):
        batch = [encode_example(r) for r in rows[start : start + 100]]
        log.log_inputs({"examples": np.array(batch, dtype=object)})
    if extra:
        log._write(list(extra))  # the raw records, past the tf.Example encoding
    log.close()
    return directory


def _check(requests: Path, statistics: str):
    return CliRunner().invoke(
        mlops_main,
        ["data", "check-skew", "--requests", str(requests), "--training-statistics", statistics],
    )


@pytest.mark.timeout(300)
def test_replaying_the_training_rows_reports_no_skew(tmp_path, training):
    rows, stats = training

    result = _check(_log(tmp_path / "log", rows), stats)

    assert result.exit_code == Exit.OK, result.output
    assert f"Requests: {len(rows)} read from 3 file(s)" in result.output
    assert "Kolmogorov-Smirnov distance" in result.output  # the calibrated tests ran
    assert "No skew beyond the schema's thresholds." in result.output
    assert "Skipped" not in result.output


@pytest.mark.timeout(300)
def test_shifted_requests_are_skew_on_the_shifted_feature(tmp_path, training):
    rows, stats = training
    _, shift = SHIFTS["fare x1.3"]

    result = _check(_log(tmp_path / "log", shift(rows[:1000], random.Random(0))), stats)

    assert result.exit_code == Exit.REJECTED, result.output
    skewed = [ln for ln in result.output.splitlines() if ln.endswith("(SKEW)")]
    assert skewed and all("] fare:" in ln for ln in skewed), skewed


@pytest.mark.timeout(300)
def test_corrupt_records_are_skipped_and_reported_not_fatal(tmp_path, training):
    from tensorflow.core.example import example_pb2

    rows, stats = training
    wrong_kind = example_pb2.Example()
    wrong_kind.features.feature["fare"].bytes_list.value.append(b"twelve")
    garbage = [b"\xff\xfe not a tf.Example \x00\x01", wrong_kind.SerializeToString(), b""]
    log = _log(tmp_path / "log", rows[:1500], extra=garbage)
    # a file cut short mid-record, as a crashed writer would leave it
    (log / "requests-truncated.tfrecord").write_bytes(
        next(log.glob("*.tfrecord")).read_bytes()[:150]
    )

    result = _check(log, stats)

    assert result.exit_code == Exit.OK, result.output
    assert "Requests: 1500 read from 3 file(s)" in result.output
    assert "Skipped 4 unreadable record(s):" in result.output
    assert "not a tf.Example" in result.output
    assert "fare is bytes_list, expected float_list" in result.output
    assert "no features" in result.output
    assert "requests-truncated.tfrecord after record 0: unreadable" in result.output


@pytest.mark.parametrize("case", ["only garbage", "no log files", "no training statistics"])
def test_check_skew_that_cannot_run_exits_2_with_one_line(tmp_path, training, case):
    import tensorflow as tf

    _, stats = training
    log = tmp_path / "log"
    log.mkdir()
    if case == "only garbage":
        with tf.io.TFRecordWriter(str(log / "requests-1.tfrecord")) as w:
            w.write(b"\xff garbage")
    elif case == "no training statistics":
        _log(log, read_rows()[:200])
        stats = str(tmp_path / "missing" / "FeatureStats.pb")

    result = _check(log, stats)

    assert result.exit_code == Exit.FAILED, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: check-skew could not run: "), lines
    assert "Traceback" not in result.output
