"""A pushed model is at least as good as the run's baselines (issue 24), end to end: a weak
candidate loses to the linear baseline and is not pushed, the summary saying why; on a small
linear regression dataset drafted by `mlops dataset init`, what is pushed measures at least as
well as a linear regression on the same eval rows."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from modules import baselines, importance
from pipeline import dataset_draft
from pipeline.config import dataset_config
from pipeline.local.run import print_report, run_pipeline
from pipeline.testing.samples import small_config, write_sample
from tests import serving_models as sm
from tests.quality_samples import linear_regression_csv

pytestmark = pytest.mark.slow


def test_a_one_step_candidate_is_not_pushed_because_the_linear_baseline_beats_it(tmp_path):
    config = small_config(
        tmp_path,
        write_sample(tmp_path / "data"),
        pipeline_name="taxi_weak",
        skip_tuning=True,
        train_steps=1,
        push_linear_when_better=False,
    )
    exit_code, report = run_pipeline(config)
    assert exit_code == 0 and report is not None
    c = report.comparison
    assert c["training_plan"]["steps_per_epoch"] * c["training_plan"]["epochs"] == 1
    # One step from random weights: the linear model scores better, so the candidate's gain
    # over it is negative, below any margin.
    assert c["scores"]["linear"] > c["scores"]["candidate"]
    assert c["gain_over_linear"] < 0 < c["required_gain"] and not c["candidate_wins"]
    assert not c["blessable"] and c["exported"] == baselines.CANDIDATE
    assert report.blessed is False and report.pushed_path is None
    assert "the candidate does not beat the linear baseline" in report.push_decision
    summary = io.StringIO()
    print_report(report, summary)
    text = summary.getvalue()
    assert "Candidate vs baselines vs previous model:" in text
    assert "previous blessed model: none blessed yet" in text
    push = next(line for line in text.splitlines() if line.startswith("Push: "))
    assert push.startswith("Push: not pushed: not blessed (")
    assert "does not beat the linear baseline" in push


def test_on_a_small_linear_regression_the_pushed_model_is_as_good_as_linear_regression(
    tmp_path,
):
    source = linear_regression_csv(tmp_path / "reg.csv")
    spec_path, _ = dataset_draft.init(
        "reg", source, "target", datasets_dir=tmp_path / "ds", data_dir=tmp_path / "data"
    )
    config = dataset_config(
        spec_path,
        output_dir=str(tmp_path / "out"),
        serving_model_dir=str(tmp_path / "serving"),
        skip_tuning=True,
    )
    exit_code, report = run_pipeline(config)
    assert exit_code == 0 and report.pushed_path, report.push_decision
    c = report.comparison
    assert c["metric"] == "mean_squared_error"
    # TFMA's MSE of the pushed model on the eval split against the linear baseline's on the same
    # rows (float32 sums: a relative 1e-4 apart at most).
    pushed_mse = report.metrics["mean_squared_error"]
    assert pushed_mse <= c["scores"]["linear"] * (1 + 1e-4)
    assert pushed_mse < 0.5 * c["scores"]["constant"]
    # What the pushed model looks at: target = 150 + 2 x1 - 30 x2 + 0.5 x3 + zone + noise, so
    # shuffling x2 (sd 1: 30^2 of variance) costs more MSE than x1 (sd 10: 20^2), both a lot.
    evaluation = next(p for p in Path(config.pipeline_root, "Evaluator", "evaluation").iterdir())
    measured = importance.read_importance(str(evaluation))
    assert measured["metric"] == "mean_squared_error" and not measured["higher_is_better"]
    drop = {f["feature"]: f["importance"] for f in measured["features"]}
    assert set(drop) == {"x1", "x2", "x3", "zone"}
    assert drop["x2"] > drop["x1"] > 100
    # Whichever model won, it serves with the regression signatures run_fn exports.
    model = tf.saved_model.load(report.pushed_path)
    assert set(model.signatures) == {
        "serving_default",
        "serving_raw",
        "transform_features",
        "regression",
    }
    assert set(model.signatures["serving_default"].structured_outputs) == {"predictions"}

    _serves_through_mlops_serve(tmp_path, spec_path, source, config.model_serving_dir)


def _serves_through_mlops_serve(tmp_path, spec_path, source, base: str) -> None:
    """The pushed model answers `mlops predict` over REST and gRPC, the same predictions, close
    to the labels of rows the linear function made (noise sd 20)."""
    with open(source, newline="") as f:
        rows = list(csv.reader(f))
    header, sample = rows[0], rows[1:11]
    label = header.index("target")
    inputs = tmp_path / "rows.csv"
    inputs.write_text(
        "\n".join(",".join(v for i, v in enumerate(r) if i != label) for r in [header, *sample])
        + "\n"
    )
    server = sm.ServerProcess("--model_name=reg", f"--model_base_path={base}").wait_ready()
    try:
        outputs = {}
        for protocol, port in (("rest", server.rest_port), ("grpc", server.grpc_port)):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mlops.cli",
                    "predict",
                    "--model_name=reg",
                    f"--dataset={spec_path}",
                    f"--input={inputs}",
                    f"--protocol={protocol}",
                    f"--port={port}",
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert out.returncode == 0, out.stderr[-3000:]
            outputs[protocol] = [
                json.loads(line)["predictions"][0] for line in out.stdout.splitlines()
            ]
        assert outputs["rest"] == pytest.approx(outputs["grpc"], rel=1e-5)
        errors = [p - float(r[label]) for p, r in zip(outputs["rest"], sample, strict=True)]
        assert max(abs(e) for e in errors) < 100  # the label's sd is ~48, the noise's 20
    finally:
        server.stop()
