"""The RowCleaner in a real (small) pipeline run: 600 taxi rows of which 3 (0.5%, under the 1%
default threshold) break the curated schema in different ways, plus 5 exact duplicates. The run
goes on with the clean rows only, quarantines each bad row with its reasons, and shows it all in
the run summary, `mlops data quarantine` and `mlops lineage`. (The stop above the threshold is
test_end_to_end.py::test_data_anomalies_stop_the_run_before_training; the cache hit on an
unchanged re-run is test_end_to_end.py::test_second_run_with_unchanged_data_is_served_from_cache.)
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli_support import Exit
from metadata.store import open_store
from pipeline.testing.samples import small_config
from pipeline.validation.quarantine import QUARANTINE_TYPE
from tests.cleaning_samples import expected_reasons, write_dirty_sample
from tests.paths import PROJECT_ROOT

# The fixture runs a whole (small) pipeline: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

ROWS, BAD, DUPLICATES = 600, 3, 5


@pytest.fixture(scope="module")
def cleaned_run(tmp_path_factory):
    from pipeline.config import PipelineConfig
    from pipeline.local.run import run_pipeline

    root = tmp_path_factory.mktemp("row_cleaning")
    data_root = write_dirty_sample(root / "data", rows=ROWS, bad=BAD, duplicates=DUPLICATES)
    # The taxi dataset's own pipeline name: `mlops data quarantine` reports that pipeline's runs
    # by default, so docs/data_quality.md's commands run here as written.
    config = small_config(
        root, data_root, skip_tuning=True, pipeline_name=PipelineConfig().pipeline_name
    )
    started = time.monotonic()
    status, report = run_pipeline(config)
    print(f"row-cleaning pipeline run: {time.monotonic() - started:.0f}s")
    return config, status, report


def _mlops(*args: str):
    from mlops.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_run_goes_on_with_the_clean_rows(cleaned_run):
    from cli_support import Exit
    from pipeline.local.run import print_report

    config, status, report = cleaned_run
    assert status == Exit.OK, report and report.components
    cleaning = report.cleaning
    clean = ROWS - BAD
    assert (cleaning.rows_in, cleaning.duplicates, cleaning.quarantined, cleaning.clean) == (
        ROWS + DUPLICATES,
        DUPLICATES,
        BAD,
        clean,
    )
    assert cleaning.reasons == {
        "wrong_type": 1,
        "out_of_domain": 1,
        "missing_value": 1,
        "out_of_range": 1,
    }
    assert report.max_quarantine_fraction == config.max_quarantine_fraction
    assert not report.quarantine_exceeded and report.anomalies == []
    states = {c.node_id: c.state for c in report.components}
    assert states["RowCleaner"] == states["Trainer"] == states["Pusher"] == "COMPLETE"
    assert report.pushed_path

    out = io.StringIO()
    print_report(report, out)
    text = out.getvalue()
    assert (
        f"Row cleaning: {ROWS + DUPLICATES} rows in, {DUPLICATES} duplicates dropped, "
        f"{BAD} quarantined (0.50% <= max 1.00%)"
    ) in text
    assert f"quarantine: {cleaning.uri}" in text and f"{clean} clean" in text


def test_statistics_validation_and_training_see_only_clean_rows(cleaned_run):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    config, _, report = cleaned_run
    store = open_store(config.metadata_connection)
    outputs = store.run_outputs(report.run_id)
    cleaned = outputs["RowCleaner"]["cleaned_examples"][0]
    raw = outputs["CsvExampleGen"]["examples"][0]
    statistics = outputs["StatisticsGen"]["statistics"][0]
    counted = 0
    for split in ("train", "eval"):
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        stats.ParseFromString(
            Path(statistics.uri, f"Split-{split}", "FeatureStats.pb").read_bytes()
        )
        counted += stats.datasets[0].num_examples
        seconds = next(f for f in stats.datasets[0].features if f.path.step == ["trip_seconds"])
        # The text cell made CsvExampleGen type the column BYTES; the clean rows are int64 again.
        assert seconds.type == statistics_pb2.FeatureNameStatistics.INT
    assert counted == ROWS - BAD
    # Every consumer downstream of the cleaner reads the cleaned examples, not ExampleGen's.
    for node_id in ("StatisticsGen", "Transform", "Evaluator", "Pusher"):
        execution = next(c for c in report.components if c.node_id == node_id)
        uris = {a.uri for a in store.inputs(execution.execution_id)["examples"]}
        assert uris == {cleaned.uri}, node_id
    assert cleaned.uri != raw.uri


def test_the_quarantine_lists_each_bad_row_and_why(cleaned_run):
    import tensorflow as tf

    from pipeline.validation.quarantine import read_rows

    config, _, report = cleaned_run
    rows = list(read_rows(report.cleaning.uri))
    by_mark = {row.features["trip_start_timestamp"][0]: row for row in rows}
    assert {m: r.reasons for m, r in by_mark.items()} == expected_reasons(BAD)
    # The row is kept as read: the tf.Example ExampleGen wrote, nothing lost.
    bitcoin = next(r for r in rows if "Bitcoin" in r.features["payment_type"])
    example = tf.train.Example.FromString(bitcoin.example)
    assert example.features.feature["payment_type"].bytes_list.value == [b"Bitcoin"]

    result = _mlops("data", "quarantine", "latest", "--metadata", config.metadata_connection)
    assert result.exit_code == 0, result.output
    assert f"{BAD} quarantined" in result.output and report.cleaning.uri in result.output
    for reasons in expected_reasons(BAD).values():
        assert "; ".join(reasons) in result.output

    as_json = _mlops("data", "quarantine", "--json", "--metadata", config.metadata_connection)
    lines = [json.loads(line) for line in as_json.output.splitlines()]
    assert sorted(r["reasons"] for r in lines) == sorted(expected_reasons(BAD).values())
    assert all(r["split"] in ("train", "eval") for r in lines)


def test_lineage_shows_the_quarantine_as_an_output_of_the_cleaning_execution(cleaned_run):
    config, _, report = cleaned_run
    meta = ["lineage", "--metadata", config.metadata_connection]
    result = _mlops(*meta, "--json", "artifacts", "--type", QUARANTINE_TYPE)
    assert result.exit_code == 0, result.output
    (artifact,) = json.loads(result.output)
    assert artifact["producer"] == "RowCleaner" and artifact["uri"] == report.cleaning.uri
    trace = _mlops(*meta, "trace", "latest")
    assert "<- RowCleaner" in trace.output and "<- CsvExampleGen" in trace.output


def test_quarantine_cli_fails_in_one_line_without_a_store(tmp_path):
    result = _mlops("data", "quarantine", "--metadata", str(tmp_path / "none.db"))
    assert result.exit_code == Exit.INPUT_MISSING
    assert result.output.count("\n") == 1 and "metadata store not found" in result.output


_BLOCK = re.compile(r"^<!-- test: quarantine -->\n```bash\n(.*?)\n```$", re.M | re.S)


def test_documented_quarantine_commands_work_as_written(cleaned_run, tmp_path):
    """docs/data_quality.md's marked block, run with bash from a directory laid out like a
    checkout after `make run` (tfx_pipeline_output/ is this run's output)."""
    config, _, report = cleaned_run
    root = PROJECT_ROOT
    (block,) = _BLOCK.findall((root / "docs" / "data_quality.md").read_text())
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(sys.prefix)
    (checkout / "tfx_pipeline_output").symlink_to(config.output_dir)
    env = {**os.environ, "PYTHONPATH": str(root)}
    outputs = []
    for command in block.splitlines():
        proc = subprocess.run(
            ["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
        outputs.append(proc.stdout)
    listing, as_json, lineage = outputs
    assert f"{BAD} quarantined" in listing and "payment_type: out_of_domain" in listing
    assert len(as_json.splitlines()) == BAD
    assert QUARANTINE_TYPE in lineage and "RowCleaner" in lineage
    assert report.cleaning.uri in lineage
