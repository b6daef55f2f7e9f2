"""Other datasets, end to end, with no code edited: the Palmer penguins (multiclass, missing
values, sliced by island) trained, evaluated, pushed and served over TF Serving's classify API;
and a CSV nobody has seen before, through `mlops dataset init`, to a pushed model."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metadata import open_store
from metadata.evaluation import read_evaluation
from modules import dataset_spec
from pipeline.config import dataset_config
from serving.repository import list_versions
from tests import serving_models as sm
from tests.mlops.test_dataset_init import synthetic_csv
from tests.paths import PROJECT_ROOT

SMALL = dict(
    train_steps=150,
    eval_steps=5,
    skip_tuning=True,
    check_drift=False,
)
PENGUINS = PROJECT_ROOT / "data" / "penguins" / "span-1" / "data.csv"
MLOPS = os.path.join(os.path.dirname(sys.executable), "mlops")


DOC = PROJECT_ROOT / "docs" / "datasets.md"


def penguins_doc_commands() -> list[str]:
    """docs/datasets.md's penguins block, one command per entry (curl's quoted JSON spans lines)."""
    block = re.search(
        r"```bash\n(python runners/local_runner.py --dataset penguins.*?)```", DOC.read_text(), re.S
    )
    assert block, "docs/datasets.md lost its penguins block"
    commands, current = [], ""
    for line in block.group(1).splitlines():
        current = f"{current}\n{line}" if current else line
        try:
            shlex.split(current)
        except ValueError:  # an open quote: the command goes on
            continue
        commands.append(current)
        current = ""
    return commands


def copy_of_the_project(dest: Path) -> Path:
    """The code, dataset specs, schema and penguins data, as a fresh checkout has them: the
    documented commands write their default output dirs under it, not under this checkout."""
    from bench.pipeline_bench import copy_code

    copy_code(dest)
    shutil.copytree(PROJECT_ROOT / "data" / "penguins", dest / "data" / "penguins")
    return dest


@pytest.mark.slow
def test_penguins_documented_commands_train_push_serve_and_classify_by_name(tmp_path):
    """The docs' penguins block as written, in a copy of the project (ports of this test's server
    substituted): the run trains, evaluates per island and pushes; the server answers the curl
    classify with species names and the documented Gentoo on top; `mlops predict --dataset`
    answers three probabilities per row. Then: multiclass metrics in MLMD, gRPC Classify."""
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc

    from serving_api.client import GrpcClient, predict_rows, read_rows

    run, serve, curl, predict = penguins_doc_commands()
    project = copy_of_the_project(tmp_path / "project")
    env = dict(os.environ, PYTHONPATH=str(project))
    argv = shlex.split(run)
    assert argv[:2] == ["python", "runners/local_runner.py"]
    out = subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Push: pushed" in out.stdout, out.stdout[-3000:]

    # Multiclass metrics in ML Metadata, overall and per island.
    config = dataset_config("penguins", output_dir=str(project / "tfx_pipeline_output"))
    store = open_store(config.metadata_connection)
    latest = store.latest_run(config.pipeline_name)
    (evaluator,) = [e for e in latest.executions if e.node_id == "Evaluator"]
    (evaluation,) = store.outputs(evaluator.id)["evaluation"]
    ev = read_evaluation(evaluation.uri)
    assert ev.candidate_metrics()["sparse_categorical_accuracy"] >= 0.9  # the spec's bar
    assert {"island:Biscoe", "island:Dream", "island:Torgersen"} <= {
        s.replace("=", ":") for s in ev.slices
    }
    per_class = {v.sub_key for v in ev.values if v.name in ("precision", "recall") and v.sub_key}
    assert len(per_class) == 3, per_class

    # The web app's predict form (`mlops ui --dataset penguins`) is the penguins spec's, bounded
    # by this run's training statistics and Transform vocabularies.
    from apps.ui import data as ui_data

    fields = {
        f.name: f
        for f in ui_data.form_fields.__wrapped__(
            config.metadata_connection, config.pipeline_name, "penguins"
        )
    }
    assert list(fields) == dataset_spec.load("penguins").raw_feature_keys
    assert fields["island"].kind == "choice"
    assert set(fields["island"].choices) == {"Biscoe", "Dream", "Torgersen"}
    assert fields["flipper_length_mm"].kind == "int"  # INT in the penguins schema
    bill = fields["bill_length_mm"]
    assert bill.kind == "float" and 30 < bill.minimum < bill.default < bill.maximum < 60

    serve_argv = shlex.split(serve)
    assert serve_argv[:2] == ["mlops", "serve"]
    base = project / "serving_model" / "penguins"
    assert list_versions(str(base))
    serve_args = [str(base) if a == "serving_model/penguins" else a for a in serve_argv[2:]]
    server = sm.ServerProcess(*serve_args).wait_ready()
    try:
        assert "localhost:8501" in curl
        answer = subprocess.run(
            ["bash", "-c", curl.replace("localhost:8501", f"127.0.0.1:{server.rest_port}")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert answer.returncode == 0, answer.stderr
        (scores,) = json.loads(answer.stdout)["results"]
        assert {c for c, _ in scores} == {"Adelie", "Chinstrap", "Gentoo"}
        assert sum(score for _, score in scores) == pytest.approx(1.0, abs=1e-4)
        assert max(scores, key=lambda cs: cs[1])[0] == "Gentoo"  # as the docs show

        rows_csv = project / "rows.csv"
        rows_csv.write_text("".join(PENGUINS.read_text().splitlines(keepends=True)[:4]))
        predict_argv = shlex.split(predict)
        assert predict_argv[:2] == ["mlops", "predict"]
        out = subprocess.run(
            [MLOPS, *predict_argv[1:], f"--port={server.rest_port}"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert [len(json.loads(line)["probabilities"]) for line in out.stdout.splitlines()] == [
            3,
            3,
            3,
        ]

        # gRPC Classify: class names, and a trained model tells the file's first rows (Adelie)
        # from its last (Chinstrap).
        rows = read_rows(str(PENGUINS))[:6] + read_rows(str(PENGUINS))[-6:]
        spec = dataset_spec.load("penguins")
        import grpc

        from serving_api.examples import row_to_example

        channel = grpc.insecure_channel(server.grpc_target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        grpc_request = classification_pb2.ClassificationRequest()
        grpc_request.model_spec.name = "penguins"
        grpc_request.model_spec.signature_name = "classification"
        for r in rows:
            grpc_request.input.example_list.examples.append(
                example_pb2.Example.FromString(row_to_example(r, spec=spec))
            )
        response = stub.Classify(grpc_request, timeout=60)
        channel.close()
        top = [max(c.classes, key=lambda x: x.score).label for c in response.result.classifications]
        truth = [r["species"] for r in rows]
        assert sum(t == p for t, p in zip(truth, top, strict=True)) >= 9, (truth, top)

        client = GrpcClient(port=server.grpc_port, spec=spec)
        predictions = predict_rows(client, "penguins", rows, encoding="raw", spec=spec)
        client.close()
        assert all(len(p["probabilities"]) == 3 for p in predictions)
    finally:
        server.stop()


@pytest.mark.slow
def test_a_dataset_from_mlops_dataset_init_runs_unedited_and_pushes(tmp_path):
    from pipeline.local.run import run_pipeline

    source = synthetic_csv(tmp_path / "customers.csv", seed=20261126, rows=400)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops.cli",
            "dataset",
            "init",
            "customers",
            "--from",
            str(source),
            "--label",
            "churned",
            "--datasets-dir",
            str(tmp_path / "datasets"),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    assert out.returncode == 0, out.stderr
    spec_path = tmp_path / "datasets" / "customers" / "dataset.yaml"
    assert str(spec_path) in out.stdout
    config = dataset_config(
        str(spec_path),
        output_dir=str(tmp_path / "out"),
        serving_model_dir=str(tmp_path / "serving_model" / "customers"),
        **SMALL,
    )
    assert config.pipeline_name == "customers_pipeline"
    exit_code, report = run_pipeline(config)
    assert exit_code == 0 and report is not None
    assert report.pushed_path, report.push_decision
    # The draft's own bars: AUC >= 0.6 and accuracy above always answering the majority.
    assert report.metrics["auc"] >= 0.6
    assert list_versions(config.model_serving_dir)
