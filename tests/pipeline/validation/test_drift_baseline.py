"""The drift baseline is the last span the data gate accepted, and the loop recovers from a
rejected span; a data root without span folders is refused in one line.

One module-scoped sequence of real pipeline runs (small data, no tuning, few steps):
  span 1 (accepted) -> add drifted span 2 (rejected) -> remove span 2, run on span 1 again
  (cached: nothing re-trained) -> add clean span 3 (compared with span 1, passes, trains on it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_support import Exit
from metadata import open_store
from pipeline.ingest import spans
from pipeline.local.run import run_pipeline
from pipeline.testing.samples import small_config, write_sample
from tests import drift_samples as ds
from tests.drift_samples import trained_span
from tests.paths import PROJECT_ROOT

SCHEMA = str(PROJECT_ROOT / "schema" / "schema.pbtxt")
BASELINE_LINE = "Drift: compared with span 1: the last span that passed the data gate"


@dataclasses.dataclass
class Recovery:
    config: object
    reports: dict  # step name -> RunReport
    exits: dict  # step name -> exit status
    outputs: dict  # step name -> printed report
    versions: dict  # step name -> pushed version directories after the step


def _run(config, name: str, rec: Recovery) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rec.exits[name], rec.reports[name] = run_pipeline(config)
    rec.outputs[name] = out.getvalue()
    serving = Path(config.model_serving_dir)
    rec.versions[name] = sorted(p.name for p in serving.iterdir()) if serving.is_dir() else []


@pytest.fixture(scope="module")
def recovery(tmp_path_factory) -> Recovery:
    root = tmp_path_factory.mktemp("drift_baseline")
    data = write_sample(root / "data")
    config = small_config(root, data, skip_tuning=True, train_steps=10)
    rec = Recovery(config, {}, {}, {}, {})
    _run(config, "span1", rec)
    spans.add_span(ds.write_csv(root / "drifted.csv", ds.drifted_rows()), data, SCHEMA)
    _run(config, "drifted", rec)
    shutil.rmtree(data / "span-2")  # the rejected span is removed ...
    _run(config, "span1_again", rec)  # ... and a run on the accepted data re-uses the cache
    spans.add_span(
        ds.write_csv(root / "clean.csv", ds.same_distribution_rows()), data, SCHEMA, span=3
    )
    _run(config, "clean", rec)
    return rec


def _states(report) -> dict[str, str]:
    return {c.node_id: c.state for c in report.components}


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_drifted_span_is_rejected_against_span_1(recovery):
    assert recovery.exits["span1"] == Exit.OK, recovery.outputs["span1"]
    report = recovery.reports["drifted"]
    assert recovery.exits["drifted"] == Exit.REJECTED
    assert report.span == 2 and report.previous_span == 1 and report.drifted
    assert BASELINE_LINE in recovery.outputs["drifted"]
    assert _states(report)["DataGate"] == "FAILED"


@pytest.mark.slow
def test_rejected_span_publishes_no_accepted_statistics(recovery):
    """Only gate-passing runs publish accepted statistics: spans 1 and 3, never span 2."""
    from pipeline.validation.data_gate import ACCEPTED_STATISTICS

    store = open_store(recovery.config.metadata_connection)
    gates = store.node_executions(recovery.config.pipeline_name, "DataGate")
    accepted = [a for g in gates for a in store.outputs(g.id).get(ACCEPTED_STATISTICS, [])]
    # span 1 (twice: its first run and the re-run after span 2 was removed) and span 3
    assert sorted(a.properties["span"].int_value for a in accepted) == [1, 1, 3]
    gate = {s.run_id: s.gate_passed for s in store.spans(recovery.config.pipeline_name)}
    assert gate[recovery.reports["drifted"].run_id] is False
    assert store.last_accepted_span(recovery.config.pipeline_name).span == 3


@pytest.mark.slow
def test_run_on_accepted_data_after_removing_the_rejected_span_reuses_the_cache(recovery):
    report = recovery.reports["span1_again"]
    assert recovery.exits["span1_again"] == Exit.OK, recovery.outputs["span1_again"]
    assert report.span == 1 and report.previous_span is None
    states = _states(report)
    for node_id in ("CsvExampleGen", "StatisticsGen", "ExampleValidator", "Transform", "Trainer"):
        assert states[node_id] == "CACHED", (node_id, states)
    # The same model as span 1's: it is the baseline itself, so no new version is pushed.
    assert report.candidate_model_id == recovery.reports["span1"].candidate_model_id
    assert recovery.versions["span1_again"] == recovery.versions["span1"]


@pytest.mark.slow
def test_clean_span_after_a_rejected_one_is_compared_with_the_last_accepted_span(recovery):
    report = recovery.reports["clean"]
    assert recovery.exits["clean"] == Exit.OK, recovery.outputs["clean"]
    assert report.span == 3 and report.previous_span == 1
    assert report.drift and not report.drifted  # measured against span 1, within thresholds
    assert BASELINE_LINE in recovery.outputs["clean"]
    assert _states(report)["Trainer"] == "COMPLETE"
    store = open_store(recovery.config.metadata_connection)
    assert trained_span(store, report) == 3


# ---- data-root layout ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda root: (root / "trips.csv").write_text("a,b\n1,2\n"), "found trips.csv"),
        (lambda root: (root / "span-1").mkdir(), "holds no .csv file"),
        (lambda root: None, "no span-N folders"),
    ],
)
def test_data_root_without_span_folders_is_refused_in_one_line(tmp_path, make, needle):
    data_root = tmp_path / "data"
    data_root.mkdir()
    make(data_root)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "runners" / "local_runner.py"),
            "--data-root",
            str(data_root),
            "--output-dir",
            str(out),
            "--skip-tuning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert proc.returncode == Exit.FAILED, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert needle in lines[0] and "span-1/data.csv" in lines[0]
    assert not out.exists()  # nothing started, no metadata store created


def test_layout_error_accepts_the_span_layout(tmp_path):
    assert spans.layout_error(write_sample(tmp_path / "data", rows=10)) is None
    assert "does not exist" in spans.layout_error(tmp_path / "missing")
