"""Continuous training on small generated spans: new span -> retrain -> compare -> push only a
better model; drift stops the run; a bad CSV never becomes a span; a run killed during the Trainer
resumes to exactly one complete pushed version; atomic pushes; serving skew from logged requests.

One module-scoped sequence of real pipeline runs is shared by the slow tests:
  span 1 (in-process) -> add span 2 (same distribution) -> run in a subprocess, SIGKILL it once
  the Trainer starts -> run again (resumes, reuses finished steps) -> add span 3 (drifted) -> run
  (stopped by the data gate).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli_support import Exit
from metadata import open_store
from mlops.cli import main as mlops_main
from pipeline.ingest import spans
from pipeline.local.run import run_pipeline
from pipeline.push import pusher as push
from pipeline.testing.samples import small_config, write_sample
from tests import drift_samples as ds
from tests.paths import PROJECT_ROOT

# Runs the pipeline several times.
pytestmark = pytest.mark.slow

SCHEMA = str(PROJECT_ROOT / "schema" / "schema.pbtxt")
# A weak first model and a better-trained second one, so the span-2 candidate beats the baseline.
SPAN1_STEPS, SPAN2_STEPS = 10, 120


def _versions(serving_dir: str) -> list[Path]:
    base = Path(serving_dir)
    return sorted(p for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []


def _hidden(serving_dir: str) -> list[str]:
    base = Path(serving_dir)
    return sorted(p.name for p in base.iterdir() if not p.name.isdigit()) if base.is_dir() else []


# ---- add-span: validated on the way in -----------------------------------------------------------
def test_add_span_writes_the_next_span(tmp_path):
    data_root = write_sample(tmp_path / "data", rows=50)
    new = ds.write_csv(tmp_path / "new.csv", ds.same_distribution_rows(60))

    result = CliRunner().invoke(
        mlops_main, ["data", "add-span", str(new), "--data-root", str(data_root)]
    )

    assert result.exit_code == 0, result.output
    assert "Added span 2" in result.output and "60 rows" in result.output
    assert spans.list_spans(data_root) == [1, 2]
    assert (data_root / "span-2" / "data.csv").read_bytes() == new.read_bytes()
    assert sorted(p.name for p in data_root.iterdir()) == ["span-1", "span-2"]  # no temp dir left


@pytest.mark.parametrize(
    "writer, needles",
    [
        (ds.write_broken_header, ["missing column(s) fare", "unexpected column(s) fare_usd"]),
        (ds.write_bad_types, ["line 4: trip_start_hour: 'seven pm' is not an integer"]),
    ],
)
def test_add_span_rejects_a_csv_that_does_not_match_the_schema(tmp_path, writer, needles):
    data_root = write_sample(tmp_path / "data", rows=50)
    before = sorted(p.relative_to(data_root) for p in data_root.rglob("*"))
    bad = writer(tmp_path / "bad.csv")

    result = CliRunner().invoke(
        mlops_main, ["data", "add-span", str(bad), "--data-root", str(data_root)]
    )

    assert result.exit_code == Exit.REJECTED
    assert "Rejected, nothing written" in result.output
    for needle in needles:
        assert needle in result.output
    assert sorted(p.relative_to(data_root) for p in data_root.rglob("*")) == before


def test_add_span_refuses_an_existing_or_older_span(tmp_path):
    data_root = write_sample(tmp_path / "data", rows=50)
    good = ds.write_csv(tmp_path / "a.csv", ds.same_distribution_rows(20))
    spans.add_span(good, data_root, SCHEMA, span=3)
    with pytest.raises(spans.SpanRejected, match="already exists"):
        spans.add_span(good, data_root, SCHEMA, span=3)
    with pytest.raises(spans.SpanRejected, match="older than the latest span 3"):
        spans.add_span(good, data_root, SCHEMA, span=2)
    assert spans.list_spans(data_root) == [1, 3]


# ---- atomic, idempotent push ---------------------------------------------------------------------
def _fake_model(path: Path) -> Path:
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"pb")
    (path / "variables" / "variables.index").write_bytes(b"index")
    return path


def test_atomic_push_renames_a_complete_version_and_never_pushes_a_model_twice(tmp_path):
    base = tmp_path / "serving" / "taxi"
    (base / "9999999999").mkdir(parents=True)  # a version from the future: versions stay increasing
    stale = base / ".push-123-999999999"  # left by a pusher killed mid-copy (no such pid)
    stale.mkdir()
    model = _fake_model(tmp_path / "model")

    path, version, written = push.atomic_push(str(model), str(base), "model-uri-1")

    assert written and version == "10000000000" and path == str(base / version)
    assert (base / version / "saved_model.pb").read_bytes() == b"pb"
    marker = json.loads((base / version / push.PUSH_MARKER).read_text())
    assert marker["model_uri"] == "model-uri-1"
    assert _hidden(str(base)) == []  # the stale temp dir is gone, no new one left
    # Resumed after a crash that came after the rename: the same model is found, not re-pushed.
    again = push.atomic_push(str(model), str(base), "model-uri-1")
    assert again == (path, version, False)
    assert len(_versions(str(base))) == 2


def test_atomic_push_failing_mid_copy_leaves_no_version(tmp_path, monkeypatch):
    base = tmp_path / "serving"
    model = _fake_model(tmp_path / "model")

    def copy_half_then_fail(src, dst, **kw):
        Path(dst).mkdir()
        (Path(dst) / "saved_model.pb").write_bytes(b"pb")
        raise OSError("disk full")

    monkeypatch.setattr(push.shutil, "copytree", copy_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        push.atomic_push(str(model), str(base), "model-uri")
    assert list(base.iterdir()) == []


# ---- serving skew from logged requests -----------------------------------------------------------
@pytest.fixture(scope="module")
def training_statistics(tmp_path_factory) -> str:
    import tensorflow_data_validation as tfdv

    root = tmp_path_factory.mktemp("skew")
    csv_path = write_sample(root / "data") / "span-1" / "data.csv"
    stats = tfdv.generate_statistics_from_csv(str(csv_path))
    out = root / "FeatureStats.pb"
    out.write_bytes(stats.SerializeToString())
    return str(out)


def _log_requests(directory: Path, rows: list[dict], raw_share: float = 0.0) -> None:
    """Log rows as the server would: serialized tf.Examples (serving_default, classify,
    regress) and, for the last `raw_share` of them, raw-feature tensors (serving_raw)."""
    import numpy as np

    from serving.request_log import RequestLog
    from serving_api.client import encode_example, raw_columns

    log = RequestLog(str(directory), max_records=150)
    split = int(len(rows) * (1 - raw_share))
    log.log_inputs({"examples": np.array([encode_example(r) for r in rows[:split]], dtype=object)})
    if split < len(rows):
        columns = raw_columns(rows[split:])  # one typed 1-D tensor per feature
        log.log_inputs(
            {
                k: np.array(v, dtype=object if isinstance(v[0], str) else None)
                for k, v in columns.items()
            }
        )
    log.close()
    assert log.logged == len(rows)


def test_request_log_files_are_complete_tfrecords(tmp_path):
    import tensorflow as tf

    rows = ds.same_distribution_rows(40)
    _log_requests(tmp_path / "requests", rows, raw_share=0.5)
    files = sorted((tmp_path / "requests").iterdir())
    assert files and all(f.name.endswith(".tfrecord") for f in files)  # nothing left .open
    examples = [
        tf.train.Example.FromString(r.numpy())
        for r in tf.data.TFRecordDataset([str(f) for f in files])
    ]
    assert len(examples) == 40
    last = examples[-1].features.feature
    assert last["company"].bytes_list.value[0].decode() == rows[-1]["company"]
    assert last["trip_start_hour"].int64_list.value[0] == int(rows[-1]["trip_start_hour"])


def test_dataplane_logs_predict_requests(tmp_path):
    import asyncio

    import numpy as np

    from serving.config import ServerOptions
    from serving.dataplane import DataPlane, ModelRef
    from serving.repository import ModelRepository
    from serving.request_log import RequestLog
    from tests import serving_models as sm

    sm.build_model(tmp_path / "taxi" / "1")
    options = ServerOptions(model_name="taxi", model_base_path=str(tmp_path / "taxi"))
    repo = ModelRepository(options.model_server_config(), 0)
    plane = DataPlane(repo, request_log=RequestLog(str(tmp_path / "log")))
    try:
        examples = np.array([sm.make_example(sm.SAMPLE_ROW)] * 3, dtype=object)
        asyncio.run(
            plane.predict(
                ModelRef("taxi", signature_name="serving_default"), {"examples": examples}
            )
        )
    finally:
        plane.close()
        repo.stop()
    assert plane.request_log.logged == 3
    assert len(list((tmp_path / "log").glob("*.tfrecord"))) == 1


@pytest.mark.timeout(300)
def test_check_skew_passes_same_distribution_and_fails_drifted_requests(
    tmp_path, training_statistics
):
    _log_requests(tmp_path / "same", ds.same_distribution_rows())
    _log_requests(tmp_path / "drifted", ds.drifted_rows())
    runner = CliRunner()
    args = ["data", "check-skew", "--training-statistics", training_statistics, "--requests"]

    same = runner.invoke(mlops_main, [*args, str(tmp_path / "same")])
    drifted = runner.invoke(mlops_main, [*args, str(tmp_path / "drifted")])

    assert same.exit_code == 0, same.output
    assert "No skew beyond the schema's thresholds." in same.output
    assert "Request anomalies (SERVING environment): none" in same.output
    assert drifted.exit_code == Exit.REJECTED, drifted.output
    assert "company: L-infinity distance" in drifted.output and "(SKEW)" in drifted.output
    assert "fare: Jensen-Shannon distance" in drifted.output


# ---- the pipeline: span after span ---------------------------------------------------------------
@dataclasses.dataclass
class Runs:
    config: object
    span1: object
    killed_output: str
    versions_after_kill: list
    hidden_after_kill: list
    span2: object
    versions_after_span2: list
    span3_exit: int
    span3: object
    span3_output: str


_CHILD = """
import sys
from pathlib import Path
from pipeline.local.run import run_pipeline
from pipeline.testing.samples import small_config
config = small_config(Path({out!r}), Path({data!r}), skip_tuning=True, train_steps={steps})
sys.exit(run_pipeline(config)[0])
"""


def _run_until_trainer_then_kill(out: Path, data: Path, steps: int) -> str:
    """Run the pipeline in a child process and SIGKILL it as soon as the Trainer starts."""
    code = _CHILD.format(out=str(out), data=str(data), steps=steps)
    # The child imports the project (and tests/) from the repository root, like pytest does.
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    )
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=env,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "▶ Trainer" in line:
                time.sleep(3)  # well inside training
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    return "".join(lines)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    import contextlib
    import io

    root = tmp_path_factory.mktemp("continuous_training")
    data = write_sample(root / "data")
    config1 = small_config(root, data, skip_tuning=True, train_steps=SPAN1_STEPS)
    status, span1 = run_pipeline(config1)
    assert status == Exit.OK, span1 and span1.push_decision

    spans.add_span(ds.write_csv(root / "span2.csv", ds.same_distribution_rows()), data, SCHEMA)
    killed_output = _run_until_trainer_then_kill(root, data, SPAN2_STEPS)
    serving_dir = config1.model_serving_dir
    versions_after_kill, hidden_after_kill = _versions(serving_dir), _hidden(serving_dir)

    config2 = dataclasses.replace(config1, train_steps=SPAN2_STEPS)
    status, span2 = run_pipeline(config2)
    assert status == Exit.OK, span2 and span2.push_decision
    versions_after_span2 = _versions(serving_dir)

    spans.add_span(ds.write_csv(root / "span3.csv", ds.drifted_rows()), data, SCHEMA)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        span3_exit, span3 = run_pipeline(config2)
    return Runs(
        config2,
        span1,
        killed_output,
        versions_after_kill,
        hidden_after_kill,
        span2,
        versions_after_span2,
        span3_exit,
        span3,
        out.getvalue(),
    )


def _states(report) -> dict[str, str]:
    return {c.node_id: c.state for c in report.components}


def _store(config):
    return open_store(config.metadata_connection)


@pytest.mark.timeout(900)
def test_first_span_trains_and_pushes_without_a_drift_baseline(runs):
    assert runs.span1.span == 1
    assert runs.span1.previous_span is None and runs.span1.drift == []
    assert runs.span1.pushed_path and Path(runs.span1.pushed_path).parent == Path(
        runs.config.model_serving_dir
    )


def test_killed_during_trainer_leaves_the_served_version_untouched(runs):
    assert "▶ Trainer" in runs.killed_output
    assert "▶ Pusher" not in runs.killed_output
    assert [str(p) for p in runs.versions_after_kill] == [runs.span1.pushed_path]
    assert runs.hidden_after_kill == []


def test_resumed_run_reuses_finished_steps_and_trains_on_span_2(runs):
    states = _states(runs.span2)
    for node_id in ("CsvExampleGen", "StatisticsGen", "ExampleValidator", "Transform"):
        assert states[node_id] == "CACHED", (node_id, states)
    # The killed run's gate accepted span 2 before the Trainer started, so the DriftValidator's
    # history (the accepted statistics) has grown: it and the gate re-check (seconds), with the
    # same baseline, span 1.
    for node_id in ("DriftValidator", "DataGate"):
        assert states[node_id] == "COMPLETE", (node_id, states)
    for node_id in ("Trainer", "Evaluator", "Pusher"):
        assert states[node_id] == "COMPLETE", (node_id, states)
    assert runs.span2.span == 2 and runs.span2.previous_span == 1
    assert runs.span2.drift and not runs.span2.drifted  # measured, within thresholds
    assert ds.trained_span(_store(runs.config), runs.span2) == 2


def test_span_2_model_is_compared_with_the_served_model_and_pushed_only_if_blessed(runs):
    report = runs.span2
    assert report.baseline_model_id == runs.span1.candidate_model_id is not None
    assert report.candidate_model_id != report.baseline_model_id
    assert "auc (change vs baseline)" in report.metrics
    versions = runs.versions_after_span2
    assert str(versions[0]) == runs.span1.pushed_path
    assert _hidden(runs.config.model_serving_dir) == []
    # Span 1 exports its linear baseline whenever its 10-step candidate loses to it (PipelineConfig
    # .push_linear_when_better), and span 2's model is then about as good on ~80 eval rows: which
    # one wins changes from run to run (unseeded training). The gate must follow the measurement
    # either way: blessed exactly when the AUC change clears min_auc_gain, pushed exactly then.
    change = report.metrics["auc (change vs baseline)"]
    clears = change > runs.config.thresholds.min_auc_gain
    if not report.blessed:
        assert not clears or report.failed_checks, (report.metrics, report.failed_checks)
        assert len(versions) == 1, versions
        assert report.push_decision.startswith("not pushed: not blessed"), report.push_decision
        return
    assert clears, (report.metrics, report.failed_checks)
    # ... exactly one new, complete version was pushed, and nothing else is in serving_model/.
    assert len(versions) == 2
    # The candidate or, when the linear baseline beat it, that baseline (modules/baselines.py).
    assert report.push_decision.startswith("pushed ")
    assert report.push_decision.endswith(f" {versions[1]}")
    assert (versions[1] / "saved_model.pb").is_file()
    assert (versions[1] / "variables" / "variables.index").is_file()
    assert _hidden(runs.config.model_serving_dir) == []
    marker = json.loads((versions[1] / push.PUSH_MARKER).read_text())
    [model] = _store(runs.config).artifacts_by_id([report.candidate_model_id]).values()
    assert marker["model_uri"] == model.uri


def test_drifted_span_stops_the_run_with_a_drift_report_and_pushes_nothing(runs):
    report = runs.span3
    assert runs.span3_exit == Exit.REJECTED
    assert report.span == 3 and report.previous_span == 2
    assert report.anomalies == []  # schema-valid: only the drift check can stop it
    drifted = {m.feature: m for m in report.drifted}
    assert {"company", "fare", "trip_seconds"} <= set(drifted), report.drift
    assert drifted["company"].comparator == "L-infinity"
    assert drifted["fare"].comparator == "Jensen-Shannon"
    for m in drifted.values():
        assert m.distance > m.threshold
    states = _states(report)
    assert states["DataGate"] == "FAILED"
    for node_id in ("Transform", "Trainer", "Evaluator", "Pusher"):
        assert node_id not in states
    assert "drift" in report.push_decision and "not pushed" in report.push_decision
    # The printed report names feature, comparator, distance and threshold.
    line = next(ln for ln in runs.span3_output.splitlines() if "company: L-infinity distance" in ln)
    assert f"{drifted['company'].distance:.4f} > threshold 0.2 (DRIFT)" in line
    assert _versions(runs.config.model_serving_dir) == runs.versions_after_span2


def test_metadata_spans_know_which_span_the_gate_accepted(runs):
    """The drifted span 3 was stopped: the last accepted span is still 2, and its run compared
    span 2 with span 1."""
    store = _store(runs.config)
    spans_by_run = {s.run_id: s for s in store.spans(runs.config.pipeline_name)}
    assert spans_by_run[runs.span3.run_id].span == 3
    assert spans_by_run[runs.span3.run_id].gate_passed is False
    assert spans_by_run[runs.span3.run_id].previous_span == 2
    accepted = store.last_accepted_span(runs.config.pipeline_name)
    assert accepted.run_id == runs.span2.run_id and accepted.span == 2
    assert accepted.previous_span == 1
