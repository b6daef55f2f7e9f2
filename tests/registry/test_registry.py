"""`mlops models` against a real model server process and the small pipeline's real ML Metadata.

The small pipeline pushes one version; copies of it under a temporary base path give three
versions of the real model. A server runs over the registry's model config file, polling it, while
REST and gRPC clients loop on the `stable` label; promote / rollback must move what answers with
zero failed requests, every bad input must leave the config file and the served label alone,
and the history, the lineage trace and the model card must agree with ML Metadata.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import requests
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from lineage.queries import trace
from metadata.evaluation import read_evaluation
from metadata.store import MetadataStore, open_store
from tests.serving_models import SAMPLE_ROW, ServerProcess, make_example

pytestmark = pytest.mark.slow
ACTOR = "tester@ci"
MODEL = "taxi"


def _mlops(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


class Models:
    """`mlops models` with this test's base path, config file, store and server."""

    def __init__(self, base: Path, config: Path, metadata: str) -> None:
        self.base, self.config, self.metadata = base, config, metadata
        self.server = ""
        self.env = {**os.environ, "MLOPS_ACTOR": ACTOR}

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return _mlops(
            self.env,
            "models",
            f"--base-path={self.base}",
            f"--config={self.config}",
            f"--metadata={self.metadata}",
            f"--server={self.server}",
            *args,
        )

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def env(small_pipeline, tmp_path_factory):
    assert small_pipeline.exit_code == 0
    pushed = sorted(p for p in Path(small_pipeline.serving_model_dir).iterdir() if p.name.isdigit())
    assert len(pushed) == 1, pushed
    root = tmp_path_factory.mktemp("registry")
    base = root / "serving_model" / MODEL
    v0 = int(pushed[0].name)
    versions = [v0, v0 + 1, v0 + 2]
    for v in versions:
        shutil.copytree(pushed[0], base / str(v))
    # A copy of the session store, so the audit records do not leak into other tests' store.
    metadata = root / "metadata.db"
    shutil.copy(small_pipeline.metadata_path, metadata)
    models = Models(base, root / "serving_model" / "models.config", str(metadata))
    return models, versions


def _labels_stable_rest(server: ServerProcess) -> int | None:
    r = requests.get(f"{server.rest_url}/v1/models/{MODEL}/labels/stable/metadata", timeout=10)
    return int(r.json()["model_spec"]["version"]) if r.status_code == 200 else None


@pytest.fixture(scope="module")
def session(env):
    """One served history, shared by the tests below: promote, rollback and retire while REST
    and gRPC clients loop on the `stable` label, then the bad inputs; what each step answered
    and what the server served is recorded for the tests to check."""
    models, (v0, v1, v2) = env
    seen: dict = {"outputs": {}, "bad": [], "grpc_seen": [], "failures": []}
    # First label before any server: written to the config file, checked against the disk.
    models.ok("promote", str(v0), "--label", "stable", "--reason", "first release")
    server = ServerProcess(
        f"--model_config_file={models.config}",
        "--model_config_file_poll_wait_seconds=0.3",
        "--file_system_poll_wait_seconds=0.5",
    ).wait_ready(timeout=240)
    models.server = f"127.0.0.1:{server.rest_port}"
    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    example = make_example(SAMPLE_ROW)
    stop = threading.Event()
    failures, grpc_seen = seen["failures"], seen["grpc_seen"]
    counts = seen["counts"] = {"rest": 0, "grpc": 0}

    def grpc_loop():
        req = predict_pb2.PredictRequest()
        req.model_spec.name = MODEL
        req.model_spec.version_label = "stable"
        req.inputs["examples"].CopyFrom(_string_tensor([example]))
        while not stop.is_set():
            try:
                grpc_seen.append(stub.Predict(req, timeout=20).model_spec.version.value)
                counts["grpc"] += 1
            except grpc.RpcError as e:
                failures.append(f"grpc {e.code()} {e.details()}")

    def rest_loop():
        http = requests.Session()
        body = {"instances": [{"b64": base64.b64encode(example).decode()}]}
        while not stop.is_set():
            r = http.post(
                f"{server.rest_url}/v1/models/{MODEL}/labels/stable:predict", json=body, timeout=20
            )
            if r.status_code != 200:
                failures.append(f"rest {r.status_code} {r.text}")
            else:
                counts["rest"] += 1

    def wait_stable(version: int, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if _labels_stable_rest(server) == version and grpc_seen and grpc_seen[-1] == version:
                return
            time.sleep(0.2)
        raise AssertionError(
            f"stable never became {version}: rest {_labels_stable_rest(server)}, "
            f"grpc {grpc_seen[-3:]}\n{server.log()}"
        )

    threads = [threading.Thread(target=grpc_loop), threading.Thread(target=rest_loop)]
    out = seen["outputs"]
    try:
        # The server loads every version (the registry's config uses the `all` policy).
        deadline = time.time() + 180
        while time.time() < deadline:
            states = requests.get(f"{server.rest_url}/v1/models/{MODEL}", timeout=10).json()
            if sum(s["state"] == "AVAILABLE" for s in states.get("model_version_status", [])) == 3:
                break
            time.sleep(0.5)
        for t in threads:
            t.start()
        wait_stable(v0)
        out["promote v1"] = models.ok(
            "promote", str(v1), "--label", "stable", "--reason", "better AUC on span 1"
        )
        wait_stable(v1)
        models.ok("promote", str(v2), "--label", "stable", "--reason", "canary looked fine")
        wait_stable(v2)
        out["rollback"] = models.ok("rollback", "--reason", "latency regression")
        wait_stable(v1)
        seen["config after rollback"] = text_format.Parse(
            models.config.read_text(), model_server_config_pb2.ModelServerConfig()
        )
        models.ok("retire", str(v0), "--reason", "superseded")

        before = seen["config before bad input"] = models.config.read_bytes()
        for args, message in bad_input(v0, v1, v2):
            result = models(*args)
            seen["bad"].append((args, message, result, models.config.read_bytes()))
        # Two promotions at once: the second finds the lock taken and changes nothing.
        with open(str(models.config) + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            result = models("promote", str(v2), "--label", "stable", "--reason", "race")
        seen["locked"] = (result, models.config.read_bytes())
        # A config file broken by hand: refused by the CLI, and the server keeps the old one.
        models.config.write_text(before.decode() + "\nmodel_config_list { oops }\n")
        broken = models.config.read_bytes()
        result = models("promote", str(v2), "--label", "stable", "--reason", "x")
        seen["broken"] = (result, broken, models.config.read_bytes())
        time.sleep(1.5)  # several config polls
        seen["stable while broken"] = (_labels_stable_rest(server), grpc_seen[-1])
        seen["server log"] = server.log()
        models.config.write_bytes(before)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        stop.set()
        server.stop()
    return models, (v0, v1, v2), seen


def bad_input(v0: int, v1: int, v2: int) -> list[tuple[tuple[str, ...], str]]:
    """(arguments, what the one error line says) after v0 is retired and v1 is stable."""
    return [
        (("promote", "999", "--label", "stable", "--reason", "x"), "not on disk"),
        (("promote", "v1", "--label", "stable", "--reason", "x"), "must be a number"),
        (("promote", str(v0), "--label", "stable", "--reason", "x"), "archived"),
        (("promote", str(v2), "--label", "bad label!", "--reason", "x"), "invalid label"),
        (("rollback", "--label", "nope"), "unknown label"),
        (("retire", str(v1)), "labelled stable"),
        (("card", "424242"), "not on disk"),
    ]


def test_promote_and_rollback_move_stable_over_rest_and_grpc_without_a_failure(session):
    models, (v0, v1, v2), seen = session
    assert f"{v0} -> {v1}" in seen["outputs"]["promote v1"]
    assert f"{v2} -> {v1}" in seen["outputs"]["rollback"]
    (entry,) = seen["config after rollback"].model_config_list.config
    assert (entry.name, dict(entry.version_labels)) == (MODEL, {"stable": v1})
    assert entry.base_path == str(models.base) and entry.model_version_policy.HasField("all")
    assert not seen["failures"], seen["failures"][:5]
    assert seen["counts"]["rest"] > 10 and seen["counts"]["grpc"] > 10, seen["counts"]
    assert set(seen["grpc_seen"]) == {v0, v1, v2}


def test_retire_moves_the_version_to_the_archive(session):
    models, (v0, v1, v2), _ = session
    assert not (models.base / str(v0)).exists()
    assert (models.base.parent / f"{MODEL}-archive" / str(v0) / "saved_model.pb").is_file()
    assert versions_on_disk(models.base) == [v1, v2]


def test_bad_input_is_one_line_and_changes_nothing(session):
    _, _, seen = session
    before = seen["config before bad input"]
    assert len(seen["bad"]) == 7
    for args, message, result, after in seen["bad"]:
        assert result.returncode != 0, args
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            args,
            result.stderr,
        )
        assert "Traceback" not in result.stderr and after == before, args
    locked, after = seen["locked"]
    assert locked.returncode != 0 and "holds" in locked.stderr and after == before


def test_a_config_broken_by_hand_is_refused_and_the_server_keeps_the_old_one(session):
    _, (_, v1, _), seen = session
    result, broken, after = seen["broken"]
    assert result.returncode != 0 and "not a valid ModelServerConfig" in result.stderr
    assert after == broken
    assert seen["stable while broken"] == (v1, v1)
    assert "Rejected model config file" in seen["server log"]


def test_history_lists_every_action_in_order_with_who_and_why(session):
    models, (v0, v1, v2), _ = session
    history = json.loads(models.ok("history", "--json"))
    steps = [(h["action"], h["from_version"], h["to_version"]) for h in history]
    assert steps == [
        ("push", "", str(v0)),
        ("promote", "", str(v0)),
        ("promote", str(v0), str(v1)),
        ("promote", str(v1), str(v2)),
        ("rollback", str(v2), str(v1)),
        ("retire", str(v0), ""),
    ]
    assert [h["reason"] for h in history[1:]] == [
        "first release",
        "better AUC on span 1",
        "canary looked fine",
        "latency regression",
        "superseded",
    ]
    assert all(h["who"] == ACTOR for h in history[1:]) and history[0]["who"] == "pipeline"
    whens = [h["when"] for h in history]
    assert all(whens) and whens == sorted(whens)
    text = models.ok("history")
    assert "latency regression" in text and ACTOR in text


def test_the_actions_are_in_the_versions_lineage_trace(session):
    models, (v0, _, _), _ = session
    summary = trace(open_store(models.metadata), str(v0)).summary
    actions = [a["properties"]["action"] for a in summary["later_actions"]]
    assert actions == ["promote", "promote", "promote", "rollback", "retire"]
    result = _mlops(models.env, "lineage", "--metadata", models.metadata, "trace", str(v0))
    assert result.returncode == 0, result.stderr
    assert "ModelAction" in result.stdout and "latency regression" in result.stdout


def test_list_shows_the_versions_on_disk_with_labels_and_ml_metadata_facts(session):
    models, (v0, v1, v2), _ = session
    summary = trace(open_store(models.metadata), str(v0)).summary
    rows = json.loads(models.ok("list", "--json"))
    assert [r["version"] for r in rows] == [v2, v1]
    assert rows[1]["labels"] == ["stable"] and rows[0]["labels"] == []
    assert all(r["server_state"] is None for r in rows)  # the server is stopped now
    evaluation = summary["evaluation"][0]
    for r in rows:
        assert r["auc"] == pytest.approx(evaluation["metrics"]["auc"])
        assert r["blessed"] is True and r["span"] == summary["inputs"][0]["span"]
    assert str(v1) in models.ok("list")


def test_model_card_numbers_equal_ml_metadata(env, small_pipeline):
    models, (v0, v1, _v2) = env
    version = v1  # a copy carries the card written at push time
    card = json.loads(models.ok("card", str(version), "--format", "json"))
    ls = open_store(small_pipeline.metadata_path)
    summary = trace(ls, str(v0)).summary
    (evaluation,) = summary["evaluation"]
    metrics = read_evaluation(_uri(ls, evaluation["evaluation_id"])).metrics()
    assert card["evaluation"]["metrics"]["auc"] == metrics["auc"]
    assert card["evaluation"]["metrics"]["binary_accuracy"] == metrics["binary_accuracy"]
    assert card["evaluation"]["blessed"] is True
    assert card["evaluation"]["blessing"] == evaluation["blessing_id"]
    assert card["span"] == summary["inputs"][0]["span"]
    assert card["lineage"]["model"] == summary["model"]["id"]
    assert card["hyperparameters"] == summary["hyperparameters"]["tuned"]
    thresholds = {t["metric"]: t for t in card["evaluation"]["thresholds"]}
    config = small_pipeline.config.thresholds
    assert thresholds["AUC"]["lower_bound"] == pytest.approx(config.min_auc)
    assert thresholds["BinaryAccuracy"]["lower_bound"] == pytest.approx(config.min_accuracy)
    slices = [s for s in card["evaluation"]["slices"] if s["slice"]]
    assert slices and all("trip_start_hour" in s["slice"] for s in slices)
    overall = [s for s in card["evaluation"]["slices"] if not s["slice"]][0]
    assert overall["metrics"]["auc"] == metrics["auc"]
    train = card["statistics"]["train"]
    assert train["num_examples"] > 0 and "fare" in train["features"]

    markdown = models.ok("card", str(version))
    assert f"version {v0}" in markdown  # written at push time, for the pushed version
    assert "## Intended use" in markdown and "## Evaluation per slice" in markdown
    assert f"{metrics['auc']:.4f}" in markdown
    html_text = models.ok("card", str(version), "--format", "html")
    assert "<table>" in html_text and "Intended use" in html_text


def _uri(ls: MetadataStore, artifact_id: int) -> str:
    return ls.artifacts_by_id([artifact_id])[artifact_id].uri


def versions_on_disk(base: Path) -> list[int]:
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())


def _string_tensor(values: list[bytes]):
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        string_val=values,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
        ),
    )
