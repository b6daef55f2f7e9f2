"""Two datasets side by side: taxi and penguins in one ML Metadata store and one serving root,
served by one `mlops serve` with no model flags, every command scoped by `--dataset`.

Fast: stand-in SavedModels with each dataset's own features (tests/serving_models.py for taxi,
tests/spec_models.py for penguins) pushed as versions 1 and 2 of each, and the two pipelines' runs
recorded in the store the way TFX records them (pipeline / run / node contexts, a RowCleaner
execution with its quarantine output), so the CLIs read what a pipeline run leaves behind. The
server is a real `mlops serve` process on free ports; the CLIs run as subprocesses.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from cli_support import Exit
from metadata.locations import locations
from model_layout import model_config
from modules import dataset_spec
from pipeline.validation import quarantine as q
from tests.paths import PROJECT_ROOT
from tests.serving_models import ServerProcess, build_model
from tests.spec_models import build_spec_model

# A scenario of several servers and CLI processes (about a minute): outside `make test-fast`.
pytestmark = pytest.mark.slow

TAXI, PENGUINS = locations("taxi"), locations("penguins")
ROWS = 3


def _mlops(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops.cli", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
    )


def _record_run(store, pipeline: str, run_id: str, quarantined: int, uri: Path) -> None:
    """One run of `pipeline` as TFX records it: its RowCleaner's quarantine output."""
    types = {
        name: store.put_context_type(mlmd.ContextType(name=name))
        for name in ("pipeline", "pipeline_run", "node")
    }
    contexts = {}
    for kind, name in (
        ("pipeline", pipeline),
        ("pipeline_run", run_id),
        ("node", f"{pipeline}.{q.ROW_CLEANER}"),
    ):
        found = store.get_context_by_type_and_name(kind, name)
        contexts[kind] = found or mlmd.Context(type_id=types[kind], name=name)
        if not found:
            [contexts[kind].id] = store.put_contexts([contexts[kind]])
    store.put_parent_contexts(
        [
            mlmd.ParentContext(
                child_id=contexts["pipeline_run"].id, parent_id=contexts["pipeline"].id
            )
        ]
    )
    execution_type = store.put_execution_type(mlmd.ExecutionType(name=q.ROW_CLEANER))
    artifact_type = store.put_artifact_type(mlmd.ArtifactType(name="QuarantinedExamples"))
    (uri / "Split-train").mkdir(parents=True)
    artifact = mlmd.Artifact(type_id=artifact_type, uri=str(uri), state=mlmd.Artifact.LIVE)
    for key, value in (
        (q.ROWS_IN, 100),
        (q.QUARANTINED, quarantined),
        (q.CLEAN, 100 - quarantined),
    ):
        artifact.custom_properties[key].int_value = value
    event = mlmd.Event(type=mlmd.Event.OUTPUT)
    event.path.steps.add().key = q.QUARANTINE
    event.path.steps.add().index = 0
    execution = mlmd.Execution(type_id=execution_type, last_known_state=mlmd.Execution.COMPLETE)
    store.put_execution(execution, [(artifact, event)], list(contexts.values()))


def _rows(where, path: Path) -> Path:
    spec = dataset_spec.load(where.dataset)
    source = sorted(Path(spec.data_root).glob("span-*/*.csv"))[0]
    with open(source, newline="") as f:
        rows = [r for _, r in zip(range(ROWS), csv.DictReader(f), strict=False)]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    serving = root / "serving_model"
    for version, bias in ((1, -10.0), (2, 10.0)):
        build_model(serving / TAXI.model_name / str(version), bias=bias)
        build_spec_model(
            serving / PENGUINS.model_name / str(version), dataset_spec.load("penguins"), bias
        )
    db = root / "metadata.db"
    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = str(db)
    store = metadata_store.MetadataStore(config)
    _record_run(store, TAXI.pipeline_name, "taxi-run", 7, root / "q-taxi")
    time.sleep(0.01)  # penguins ran last: a command that reads "the latest run" would see it
    _record_run(store, PENGUINS.pipeline_name, "penguins-run", 3, root / "q-penguins")
    server = ServerProcess(f"--serving_root={serving}").wait_ready()
    yield {"root": root, "serving": serving, "db": str(db), "server": server}
    server.stop()


def test_one_server_serves_every_pushed_model_from_one_generated_config(world):
    path = Path(model_config.config_path(world["serving"]))
    entries = {m.name: m for m in model_config.read(str(path)).model_config_list.config}
    assert set(entries) == {TAXI.model_name, PENGUINS.model_name}
    for name, entry in entries.items():
        assert entry.base_path == str(world["serving"] / name)
        assert not entry.version_labels  # each model's labels are its own, none yet
    url = world["server"].rest_url
    for name in entries:
        states = _get(f"{url}/v1/models/{name}")["model_version_status"]
        assert {(s["version"], s["state"]) for s in states} == {
            ("1", "AVAILABLE"),
            ("2", "AVAILABLE"),
        }


def test_predict_targets_each_datasets_model(world, tmp_path):
    port = str(world["server"].rest_port)
    outputs = {}
    for where in (TAXI, PENGUINS):
        args = ["predict", "--input", str(_rows(where, tmp_path / f"{where.name}.csv"))]
        if where is PENGUINS:
            args += ["--dataset", "penguins"]  # taxi: the default dataset
        result = _mlops(*args, "--port", port)
        assert result.returncode == 0, result.stderr
        outputs[where.name] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [len(r["probabilities"]) for r in outputs["taxi"]] == [1] * ROWS
    # penguins: one probability per class, from the penguins model (its features parsed)
    assert [len(r["probabilities"]) for r in outputs["penguins"]] == [3] * ROWS


def test_promote_one_model_without_touching_the_other(world, tmp_path):
    server = world["server"]
    path = model_config.config_path(world["serving"])

    def models(where, *args):
        return _mlops(
            "models",
            "--dataset",
            where.name,
            f"--base-path={world['serving'] / where.model_name}",
            f"--metadata={world['db']}",
            f"--server=127.0.0.1:{server.rest_port}",
            *args,
        )

    result = models(PENGUINS, "promote", "1", "--label", "stable", "--reason", "first penguins")
    assert result.returncode == 0, result.stderr
    labels = {
        m.name: dict(m.version_labels) for m in model_config.read(path).model_config_list.config
    }
    assert labels == {TAXI.model_name: {}, PENGUINS.model_name: {"stable": 1}}
    result = models(TAXI, "promote", "2", "--label", "stable", "--reason", "taxi release")
    assert result.returncode == 0, result.stderr
    labels = {
        m.name: dict(m.version_labels) for m in model_config.read(path).model_config_list.config
    }
    assert labels == {TAXI.model_name: {"stable": 2}, PENGUINS.model_name: {"stable": 1}}
    history = models(PENGUINS, "history", "--json")
    assert [(a["model"], a["to_version"]) for a in json.loads(history.stdout)] == [
        ("penguins", "1")
    ]
    # The server re-reads the shared file: each label answers with its own model's version.
    rows = _rows(PENGUINS, tmp_path / "p.csv")
    deadline = time.time() + 30
    while True:
        result = _mlops(
            "predict", "--dataset", "penguins", "--input", str(rows),
            "--port", str(server.rest_port), "--version_label", "stable",
        )  # fmt: skip
        if result.returncode == 0 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    scores = [json.loads(line)["probabilities"] for line in result.stdout.splitlines()]
    assert all(p[-1] < 0.01 for p in scores)  # version 1 (bias -10), not the latest, 2


def test_quarantine_lineage_and_monitor_read_their_own_datasets_pipeline(world):
    db = world["db"]
    taxi = _mlops("data", "quarantine", "--metadata", db)  # default: taxi, though penguins ran last
    assert taxi.returncode == 0, taxi.stderr
    assert "Run taxi-run: 100 rows in, 0 duplicates dropped, 7 quarantined" in taxi.stdout
    penguins = _mlops("data", "quarantine", "--dataset", "penguins", "--metadata", db)
    assert penguins.returncode == 0, penguins.stderr
    assert "Run penguins-run:" in penguins.stdout and "3 quarantined" in penguins.stdout
    wrong = _mlops("data", "quarantine", "taxi-run", "--dataset", "penguins", "--metadata", db)
    assert wrong.returncode == Exit.INPUT_MISSING and wrong.stderr.count("\n") == 1
    runs = _mlops("lineage", "--metadata", db, "--dataset", "penguins", "--json", "runs")
    assert runs.returncode == 0, runs.stderr
    assert [r["run_id"] for r in json.loads(runs.stdout)] == ["penguins-run"]
    every = _mlops("lineage", "--metadata", db, "--json", "runs")
    assert {r["run_id"] for r in json.loads(every.stdout)} == {"penguins-run", "taxi-run"}
    bad = _mlops("monitor", "--requests", str(world["root"]), "--dataset", "no_such", "--once")
    assert bad.returncode == 2 and "no_such" in bad.stderr and bad.stderr.count("\n") == 1


def test_serve_flags_select_models_as_tf_serving_does(world, tmp_path):
    # --dataset: that dataset's model alone.
    one = ServerProcess(f"--serving_root={world['serving']}", "--dataset=penguins").wait_ready()
    try:
        assert _get(f"{one.rest_url}/v1/models/penguins")["model_version_status"]
        with pytest.raises(urllib.error.HTTPError) as e:
            _get(f"{one.rest_url}/v1/models/taxi")
        assert e.value.code == 404
    finally:
        one.stop()
    # An empty serving root: one line, exit 2 (usage), nothing written.
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _mlops("serve", f"--serving_root={empty}", "--rest_api_port=0", "--port=0")
    assert result.returncode == 2 and "no pushed model under" in result.stderr
    assert not os.listdir(empty)
    result = _mlops("serve", "--dataset=taxi", "--model_name=x", "--rest_api_port=0")
    assert result.returncode == 2 and "--dataset names the model itself" in result.stderr


DOC = PROJECT_ROOT / "docs" / "serving.md"


def _doc_block(kind: str) -> str:
    import re

    (body,) = re.findall(
        rf"^<!-- test: {kind} -->\n```bash\n(.*?)\n```$", DOC.read_text(), re.M | re.S
    )
    return body


def test_documented_multi_model_commands_work_as_written(tmp_path):
    """docs/serving.md's "One server, every model" blocks, run from a checkout-like directory."""
    serving = tmp_path / "serving_model"
    for version, bias in ((1, -10.0), (2, 10.0)):
        build_model(serving / TAXI.model_name / str(version), bias=bias)
        build_spec_model(
            serving / PENGUINS.model_name / str(version), dataset_spec.load("penguins"), bias
        )
    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "metadata.db")
    metadata_store.MetadataStore(config)  # an empty store: the audit trail goes here
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "data").symlink_to(PROJECT_ROOT / "data")
    (checkout / ".venv").symlink_to(sys.prefix)
    (server_cmd,) = _doc_block("multimodel-server").splitlines()
    assert server_cmd.split()[1:] == ["serve"]  # no model flag at all
    server = ServerProcess(f"--serving_root={serving}").wait_ready()
    try:
        commands = _doc_block("multimodel").replace(
            "mlops predict", f"mlops predict --port {server.rest_port}"
        )
        env = {
            **os.environ,
            "MLOPS_SERVER": f"127.0.0.1:{server.rest_port}",
            "MLOPS_METADATA": config.sqlite.filename_uri,
            "MLOPS_MODEL_BASE_PATH": str(serving / PENGUINS.model_name),
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        script = "set -euo pipefail\n"
        for line in commands.splitlines():
            script += f"{line}\n"
            if "--version_label" in line or "promote" in line:
                script += "sleep 2\n"  # the server's one-second config poll
        out = subprocess.run(
            ["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
    finally:
        server.stop()
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"row"')]
    assert [len(r["probabilities"]) for r in rows] == [3] * 3 + [3] * 3 + [1] * 3
    assert all(r["probabilities"][-1] < 0.01 for r in rows[3:6])  # stable = version 1
    assert "promote stable: - -> 1" in out.stdout
