"""`mlops lineage` against the real MLMD store of the shared small-pipeline run (read only)."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from cli_support import Exit
from lineage.cli import lineage

# Reads the shared small_pipeline run.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli(small_pipeline):
    """Invoke `mlops lineage --metadata <small store> ...` in-process; returns (exit code,
    stdout, stderr)."""
    assert small_pipeline.exit_code == 0, "the shared small pipeline run failed"
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(lineage, ["--metadata", small_pipeline.metadata_path, *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return invoke


def _json(cli, *args: str):
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_trace_of_pushed_model_reaches_input_csv(cli, small_pipeline):
    data = _json(cli, "trace", "latest")
    summary = data["summary"]
    assert data["target"]["type"] == "PushedModel"
    assert summary["pushed"]["pushed"] is True
    csv_path = os.path.join(small_pipeline.data_root, "span-1", "data.csv")
    assert [csv_path] == [f for item in summary["inputs"] for f in item["files"]]
    assert summary["inputs"][0]["span"] == 1
    assert summary["inputs"][0]["fingerprint"].startswith("split:single_split,num_files:1")
    # The whole chain is there: every component type between the CSV and the pushed model.
    components = {e["component"] for e in data["executions"]}
    assert {"CsvExampleGen", "Transform", "Trainer", "Evaluator", "Pusher"} <= components
    types = {a["type"] for a in data["artifacts"]}
    assert {
        "Examples",
        "Schema",
        "TransformGraph",
        "HyperParameters",
        "Model",
        "ModelBlessing",
        "ModelEvaluation",
        "ExampleStatistics",
        "ExampleAnomalies",
        "PushedModel",
    } <= types
    assert summary["hyperparameters"]["tuned"], "best hyperparameters were not read"
    assert summary["hyperparameters"]["train_args"] == {
        "num_steps": small_pipeline.config.train_steps
    }
    assert summary["evaluation"][0]["blessed"] is True
    assert summary["evaluation"][0]["metrics"], "evaluation metrics were not read"
    assert summary["data_checks"] and summary["data_checks"][0]["anomalies"]

    code, text, _ = cli("trace", "latest")
    assert code == 0
    assert f"input file: {csv_path}" in text
    assert "<- Trainer" in text and "<- CsvExampleGen" in text
    assert "BLESSED" in text and "baseline:" in text


def test_trace_accepts_served_version_path_and_artifact_ids(cli, small_pipeline):
    latest = _json(cli, "trace", "latest")
    target_id = latest["target"]["id"]
    version = latest["summary"]["pushed"]["version"]
    served_dir = os.path.join(small_pipeline.serving_model_dir, version)
    assert os.path.isdir(served_dir)
    assert _json(cli, "trace", version)["target"]["id"] == target_id
    assert _json(cli, "trace", served_dir)["target"]["id"] == target_id
    assert _json(cli, "trace", str(target_id))["target"]["id"] == target_id
    model_id = latest["summary"]["model"]["id"]
    by_model = _json(cli, "trace", str(model_id))
    assert by_model["target"]["type"] == "Model"
    assert by_model["summary"]["inputs"] == latest["summary"]["inputs"]


def test_unknown_targets_are_clear_errors(cli, small_pipeline):
    for target in (
        "987654",
        os.path.join(small_pipeline.serving_model_dir, "123"),
        "no-such-thing",
    ):
        code, out, err = cli("trace", target)
        assert code == Exit.INPUT_MISSING, target
        assert err.startswith("Error: ") and "Traceback" not in err
    code, _, err = cli("graph", "987654", "-o", "x.svg")
    assert code == Exit.INPUT_MISSING and "987654" in err
    code, _, err = cli("diff", "latest", "no-such-run")
    assert code == Exit.INPUT_MISSING and "unknown run 'no-such-run'" in err
    code, _, err = cli("artifacts", "--type", "NoSuchType")
    assert code == Exit.INPUT_MISSING and "PushedModel" in err  # lists the types that do exist


def test_runs_and_artifacts(cli, small_pipeline):
    runs = _json(cli, "runs")
    assert len(runs) >= 1
    run = runs[-1]
    assert run["pipeline"] == small_pipeline.config.pipeline_name
    assert run["status"] == "complete" and run["pushed"] is True
    states = {c["component"]: c["state"] for c in run["components"]}
    assert states["CsvExampleGen"] == "complete" and states["Pusher"] == "complete"
    assert run["duration_s"] > 0

    pushed = _json(cli, "artifacts", "--type", "PushedModel")
    assert pushed and all(a["type"] == "PushedModel" and a["producer"] == "Pusher" for a in pushed)
    # Runs that evaluated but did not push (e.g. a re-run on unchanged data) also leave a
    # PushedModel, with pushed=0 and no version.
    versions = [
        a["properties"]["pushed_version"] for a in pushed if "pushed_version" in a["properties"]
    ]
    assert run["pushed_version"] in versions
    examples = _json(cli, "artifacts", "--type", "Examples", "--run", run["run_id"])
    raw = [a for a in examples if a["producer"] == "CsvExampleGen"]
    assert raw and raw[0]["properties"]["span"] == 1
    all_in_run = _json(cli, "artifacts", "--run", run["run_id"])
    assert {"Model", "PushedModel", "Examples"} <= {a["type"] for a in all_in_run}
    code, text, _ = cli("artifacts", "--type", "ModelBlessing")
    assert code == 0 and "blessed=1" in text and "Evaluator" in text


def test_diff_of_a_run_with_itself_is_empty(cli, small_pipeline):
    # The fixture's own run: later tests re-run the pipeline on this store (a cached re-run has
    # no metrics of its own), so "latest" is not necessarily it.
    run_id = small_pipeline.report.run_id
    data = _json(cli, "diff", run_id, run_id)
    assert all(not s["changed"] for s in data["sections"].values())
    assert data["sections"]["hyperparameters"]["unchanged"] > 0
    assert data["sections"]["metrics"]["unchanged"] > 0


@pytest.mark.parametrize("engine", ["auto", "builtin"])
def test_graph_writes_valid_svg(cli, tmp_path, engine):
    out = tmp_path / "lineage.svg"
    info = _json(cli, "graph", "latest", "-o", str(out), "--engine", engine)
    assert out.stat().st_size == info["bytes"] > 0
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    text = out.read_text()
    assert "PushedModel" in text and "CsvExampleGen" in text and "data.csv" in text


@pytest.mark.parametrize("engine", ["auto", "builtin"])
def test_graph_writes_valid_png(cli, tmp_path, engine):
    png = tmp_path / "lineage.png"
    code, out, err = cli("graph", "latest", "-o", str(png), "--engine", engine)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as image:
        assert image.width > 200 and image.height > 50
        # Readable at normal size (was 4170x258 left to right with every artifact a node).
        print(f"{engine}: {image.width}x{image.height} px")
        assert image.width <= 1600 and image.height <= 2000
        assert 0.3 <= image.width / image.height <= 2.5


def test_graph_writes_valid_dot(cli, tmp_path):

    dot = tmp_path / "lineage.dot"
    code, out, err = cli("graph", "latest", "-o", str(dot))
    assert code == 0, err
    import pydot

    (graph,) = pydot.graph_from_dot_file(str(dot))
    labels = " ".join(n.get_label() or "" for n in graph.get_nodes())
    assert "PushedModel" in labels and "Trainer" in labels
    assert len(graph.get_edges()) >= 10

    code, _, err = cli("graph", "latest", "-o", str(tmp_path / "lineage.gif"))
    assert code == Exit.FAILED and "unsupported graph format" in err
