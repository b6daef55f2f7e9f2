"""`--train-spans N`: Transform, Tuner and Trainer read the newest span plus the N-1 highest earlier
spans the data gate accepted; a rejected span never enters; N = 1 leaves the pipeline as it was.

One module-scoped sequence of real pipeline runs with N = 2 (400 rows a span, 10 steps, no tuning):
  span 1 (window: span 1 alone) -> add drifted span 2 (rejected by the gate, nothing trained) ->
  add clean span 3, run through the documented runner command (spans 1 and 3: the rejected span 2
  is skipped, every train row of both reaches the Trainer).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import subprocess
import sys

import pytest

from cli_support import Exit
from metadata import open_store
from metadata.store import span_of
from pipeline.config import PipelineConfig, span_count
from pipeline.ingest import spans
from pipeline.ingest.training_window import (
    TRAINING_WINDOW_RESOLVER,
    AcceptedSpan,
    AcceptedSpansStrategy,
    SpanNotAcceptedError,
    choose_window,
)
from pipeline.local.run import run_pipeline
from pipeline.pipeline import create_pipeline
from pipeline.testing.samples import small_config, write_sample
from tests import drift_samples as ds
from tests.paths import PROJECT_ROOT

SCHEMA = str(PROJECT_ROOT / "schema" / "schema.pbtxt")
WINDOW = 2
# The documented command (README, docs/continuous_training.md); the test adds where and how small.
DOCUMENTED = ["runners/local_runner.py", "--skip-tuning", "--train-spans", str(WINDOW)]


# ---- choosing the window (no pipeline) -----------------------------------------------------------
def _a(span: int, ms: int, examples_id: int, statistics_id: int | None = None) -> AcceptedSpan:
    return AcceptedSpan(span, ms, statistics_id or ms, examples_id)


def test_window_is_the_current_span_and_the_highest_accepted_spans_below_it():
    accepted = [_a(1, 10, 101), _a(2, 20, 102), _a(3, 30, 103), _a(5, 50, 105)]
    window = choose_window(105, 5, accepted, 3)
    assert [a.span for a in window] == [5, 3, 2]
    assert [a.span for a in choose_window(105, 5, accepted, 1)] == [5]
    assert [a.span for a in choose_window(105, 5, accepted, 9)] == [5, 3, 2, 1]


def test_window_takes_the_newest_acceptance_of_a_span_and_nothing_above_the_current_span():
    # span 2 accepted twice (re-ingested after a fix: other examples); span 4 accepted once but its
    # folder was removed since, so the run is on span 3 again.
    accepted = [_a(2, 10, 201), _a(2, 30, 202), _a(4, 40, 104), _a(3, 50, 103), _a(3, 20, 103)]
    window = choose_window(103, 3, accepted, 2)
    assert [(a.span, a.examples_id) for a in window] == [(3, 103), (2, 202)]
    assert window[0].accepted_ms == 50  # the current span's newest acceptance


def test_current_span_without_an_acceptance_is_refused():
    with pytest.raises(SpanNotAcceptedError, match="span 3 .* not trained on"):
        choose_window(103, 3, [_a(1, 10, 101), _a(3, 20, 999)], 2)


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", ""])
def test_train_spans_flag_refuses_anything_but_a_positive_count(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="whole number of spans >= 1"):
        span_count(text)


def test_runner_refuses_a_bad_train_spans_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "runners/local_runner.py", "--train-spans", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--train-spans: '0': expected a whole number of spans >= 1" in proc.stderr


# ---- the graph -----------------------------------------------------------------------------------
def _nodes(config: PipelineConfig) -> dict:
    return {c.id: c for c in create_pipeline(config).components}


def test_default_pipeline_has_no_window_and_transform_reads_this_runs_examples(tmp_path):
    config = small_config(tmp_path, tmp_path / "data")
    assert config.train_spans == PipelineConfig().train_spans == 1
    nodes = _nodes(config)
    assert TRAINING_WINDOW_RESOLVER not in nodes
    assert nodes["Transform"].inputs["examples"] is nodes["RowCleaner"].outputs["cleaned_examples"]


def test_window_resolver_runs_after_the_gate_and_feeds_transform_only(tmp_path):
    nodes = _nodes(small_config(tmp_path, tmp_path / "data", train_spans=3))
    resolver = nodes[TRAINING_WINDOW_RESOLVER]
    assert {n.id for n in resolver.upstream_nodes} == {"RowCleaner", "DataGate"}
    assert resolver.exec_properties["resolver_class"] is AcceptedSpansStrategy
    assert {"num_spans": 3} in resolver.exec_properties.values()
    assert TRAINING_WINDOW_RESOLVER in {n.id for n in nodes["Transform"].upstream_nodes}
    newest = nodes["RowCleaner"].outputs["cleaned_examples"]
    # The Evaluator and the Pusher's warmup requests stay on the newest span (its clean rows).
    assert nodes["Evaluator"].inputs["examples"] is newest
    assert nodes["Pusher"].inputs["examples"] is newest
    with pytest.raises(ValueError, match="train_spans must be >= 1"):
        _nodes(small_config(tmp_path, tmp_path / "data", train_spans=0))


# ---- Kubeflow: refused before compiling, because KubeflowV2DagRunner cannot compile it -----------
def test_kubeflow_v2_compiler_really_rejects_the_window_resolver(tmp_path, monkeypatch):
    """Why the refusal: past the check, TFX's own compiler stops on the window's strategy."""
    from pipeline import kubeflow as kr
    from pipeline.kubeflow import compiler

    monkeypatch.setattr(compiler, "validate", lambda kcfg: None)
    with pytest.raises(TypeError, match="only support LatestArtifactStrategy"):
        kr.compile_pipeline(kr.KubeflowConfig().replace(train_spans=2), tmp_path / "x.yaml")


# ---- the pipeline, span after span ---------------------------------------------------------------
@dataclasses.dataclass
class Sequence:
    config: PipelineConfig
    exits: dict
    reports: dict
    outputs: dict


def _run_in_process(config, name: str, seq: Sequence) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        seq.exits[name], seq.reports[name] = run_pipeline(config)
    seq.outputs[name] = out.getvalue()


def _run_documented_command(config: PipelineConfig, name: str, seq: Sequence) -> None:
    from pipeline.local.report import latest_run_report

    flags = [
        *("--pipeline-name", config.pipeline_name),
        *("--data-root", config.data_root),
        *("--output-dir", config.output_dir),
        *("--serving-model-dir", config.model_serving_dir),
        *("--train-steps", str(config.train_steps)),
        *("--eval-steps", str(config.eval_steps)),
    ]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    )
    proc = subprocess.run(
        [sys.executable, *DOCUMENTED, *flags],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=PROJECT_ROOT,
        env=env,
    )
    seq.exits[name] = proc.returncode
    seq.outputs[name] = proc.stdout + proc.stderr
    seq.reports[name] = latest_run_report(config.metadata_connection, config.pipeline_name)


@pytest.fixture(scope="module")
def window(tmp_path_factory) -> Sequence:
    """Three runs with a window of two: span 1 accepted -> drifted span 2 rejected -> clean span 3
    (through the documented command), which must train on spans 1 and 3 and never on 2."""
    root = tmp_path_factory.mktemp("training_window")
    data = write_sample(root / "data")
    config = small_config(root, data, skip_tuning=True, train_steps=10, train_spans=WINDOW)
    seq = Sequence(config, {}, {}, {})
    _run_in_process(config, "span1", seq)
    spans.add_span(ds.write_csv(root / "s2.csv", ds.drifted_rows()), data, SCHEMA)
    _run_in_process(config, "drifted", seq)
    clean = ds.same_distribution_rows(start=3)
    spans.add_span(ds.write_csv(root / "s3.csv", clean), data, SCHEMA)
    _run_documented_command(config, "span3", seq)
    return seq


def _execution(report, node_id: str) -> int:
    return next(c.execution_id for c in report.components if c.node_id == node_id)


def _checked_examples(store, report) -> int:
    """The Examples a run's StatisticsGen (and so its DataGate) checked: the RowCleaner's rows."""
    [examples] = store.inputs(_execution(report, "StatisticsGen"))["examples"]
    return examples.id


def _records(uri: str, split: str = "train") -> int:
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(uri, f"Split-{split}", "*"))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _transform_inputs(store, report) -> list:
    return store.inputs(_execution(report, "Transform"))["examples"]


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_first_run_trains_on_the_only_accepted_span(window):
    assert window.exits["span1"] == Exit.OK, window.outputs["span1"]
    report = window.reports["span1"]
    assert report.span == 1 and report.training_spans == [1]
    assert "Trained on: span 1\n" in window.outputs["span1"]


@pytest.mark.slow
def test_rejected_span_trains_nothing(window):
    report = window.reports["drifted"]
    assert window.exits["drifted"] == Exit.REJECTED
    assert report.span == 2 and report.drifted and report.training_spans == []
    states = {c.node_id: c.state for c in report.components}
    assert states["DataGate"] == "FAILED"
    for node_id in (TRAINING_WINDOW_RESOLVER, "Transform", "Trainer"):
        assert node_id not in states
    assert "Trained on" not in window.outputs["drifted"]


@pytest.mark.slow
def test_window_after_a_rejected_span_covers_the_accepted_spans_and_every_row_of_both(window):
    assert window.exits["span3"] == Exit.OK, window.outputs["span3"][-3000:]
    report = window.reports["span3"]
    assert report.span == 3 and report.previous_span == 1  # drift baseline: the last accepted
    assert report.training_spans == [1, 3]
    assert "Trained on: spans 1, 3" in window.outputs["span3"]
    store = open_store(window.config.metadata_connection)
    name = window.config.pipeline_name
    # Exactly the (cleaned) Examples the gate checked in runs 1 and 3; no Transform read span 2.
    examples = _transform_inputs(store, report)
    first, this = (
        _checked_examples(store, window.reports["span1"]),
        _checked_examples(store, report),
    )
    assert {e.id for e in examples} == {first, this}
    read = {
        span_of(e)
        for t in store.node_executions(name, "Transform")
        for e in store.inputs(t.id)["examples"]
    }
    assert read == {1, 3}
    # The Resolver handed over spans 1 and 3 with the statistics the gate accepted for them.
    resolved = store.outputs(_execution(report, TRAINING_WINDOW_RESOLVER))
    assert sorted(span_of(e) for e in resolved["examples"]) == [1, 3]
    assert sorted(a.properties["span"].int_value for a in resolved["accepted"]) == [1, 3]
    # The Trainer read one transformed artifact per span, holding every train row of both.
    transformed = store.inputs(_execution(report, "Trainer"))["examples"]
    assert len(transformed) == 2
    raw_rows = [_records(e.uri) for e in examples]
    assert min(raw_rows) > 0
    assert sum(_records(t.uri) for t in transformed) == sum(raw_rows)
    # The Evaluator judged the candidate on span 3's eval split alone.
    [evaluated] = store.inputs(_execution(report, "Evaluator"))["examples"]
    assert evaluated.id == this
