"""A gradient-boosted-trees model (TF-DF), trained and exported by the project's trainer code on a
real Transform output of taxi rows, served by a real `mlops serve` process over REST and gRPC with
the same signatures as the other families; and the lazy TF-DF op registration behind it."""

from __future__ import annotations

import base64
import csv
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from model_layout.custom_ops import needs_decision_forest_ops
from modules import baselines, dataset_spec
from modules.families import GRADIENT_BOOSTED_TREES
from modules.model import (
    build_keras_model,
    build_linear_model,
    hyperparameter_space,
    with_model_inputs,
)
from modules.preprocessing import preprocessing_fn
from modules.trainer import export_serving_model, fit_gradient_boosted_trees
from pipeline.config import PipelineConfig
from pipeline.testing.samples import TAXI_CSV
from serving_api.client import encode_example
from tests import serving_models as sm

# Trains a Transform and two models (about 3 minutes here): outside `make test-fast`'s budget.
pytestmark = pytest.mark.slow

TRAIN_ROWS, HELD_OUT_ROWS = 1500, 300


def _typed(value: str, kind: int) -> list:
    if value == "":
        return []
    if kind == 0:  # bytes
        return [value.encode()]
    return [int(float(value))] if kind == 1 else [float(value)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Taxi rows through the real preprocessing_fn, a TF-DF model on the first TRAIN_ROWS
    exported as version 1 of `taxi`, a linear model as version 1 of `linear`; the held-out
    raw rows."""
    spec = dataset_spec.load()
    schema = tfdv.load_schema_text(PipelineConfig().schema_path)
    feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    kinds = {f.name: {1: 0, 2: 1, 3: 2}[f.type] for f in schema.feature}
    with open(TAXI_CSV, newline="") as f:
        rows = list(csv.DictReader(f))[: TRAIN_ROWS + HELD_OUT_ROWS]
    instances = [
        {k: _typed(row.get(k, ""), kinds[k]) for k in feature_spec} for row in rows[:TRAIN_ROWS]
    ]
    temp = str(tmp_path_factory.mktemp("tft"))
    with tft_beam.Context(temp_dir=temp, force_tf_compat_v1=False):
        (data, _), fn = (
            instances,
            dataset_metadata.DatasetMetadata(schema),
        ) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn, output_record_batches=False)
    graph = str(tmp_path_factory.mktemp("graph"))
    _ = fn | tft_beam.WriteTransformFn(graph)
    # The raw metadata beside it, as TFX's Transform writes it (serving parses raw features).
    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(schema),
        os.path.join(graph, tft.TFTransformOutput.RAW_METADATA_DIR),
    )
    output = tft.TFTransformOutput(graph)
    label = dataset_spec.transformed_name(spec.label)
    inputs = {dataset_spec.transformed_name(k) for k in spec.raw_feature_keys}
    columns = {k: np.array([[r[k]] for r in data]) for k in inputs}
    labels = np.array([r[label] for r in data])
    train = tf.data.Dataset.from_tensor_slices((columns, labels)).batch(512)

    hp = hyperparameter_space((GRADIENT_BOOSTED_TREES,))
    forest = fit_gradient_boosted_trees(build_keras_model(hp, spec=spec), train, spec)
    root = tmp_path_factory.mktemp("models")
    export_serving_model(with_model_inputs(forest, spec), output, str(root / "taxi" / "1"), spec)
    export_serving_model(build_linear_model(spec), output, str(root / "linear" / "1"), spec)
    held_out = rows[TRAIN_ROWS:]
    return root, held_out, spec, train


@pytest.fixture(scope="module")
def server(exported):
    root, _, _, _ = exported
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{n}" base_path: "{root / n}" model_platform: "tensorflow" }}\n'
            for n in ("taxi", "linear")
        )
        + "}\n"
    )
    proc = sm.ServerProcess(f"--model_config_file={config}").wait_ready()
    yield proc
    proc.stop()


def _held_out_examples(exported) -> tuple[list[bytes], np.ndarray]:
    _, rows, spec, _ = exported
    labels = np.array([float(r["tips"]) > 0.2 * float(r["fare"] or 0) for r in rows])
    features = [{k: v for k, v in r.items() if k in spec.raw_feature_keys} for r in rows]
    return [encode_example(f, spec) for f in features], labels


def test_forest_export_needs_tfdf_ops_and_keras_export_does_not(exported):
    root, _, _, _ = exported
    assert needs_decision_forest_ops(root / "taxi" / "1")
    assert not needs_decision_forest_ops(root / "linear" / "1")


def test_keras_model_loads_without_importing_tfdf(exported):
    """The loader hook imports TF-DF only for a model that needs its ops: a server of Keras
    models does not pay for it (checked in a fresh process)."""
    root, _, _, _ = exported
    code = (
        "import sys; from model_layout.custom_ops import register_ops_for as r; "
        f"print(r({str(root / 'linear' / '1')!r}), 'tensorflow_decision_forests' in sys.modules, "
        f"r({str(root / 'taxi' / '1')!r}), 'tensorflow_decision_forests' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False", "True", "True"]


def test_forest_serves_the_same_signatures_as_the_linear_family(server):
    def metadata(name: str) -> dict:
        r = requests.get(f"{server.rest_url}/v1/models/{name}/metadata", timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["metadata"]["signature_def"]["signature_def"]

    forest, linear = metadata("taxi"), metadata("linear")
    assert (
        set(forest)
        == set(linear)
        >= {
            "serving_default",
            "serving_raw",
            "transform_features",
            "classification",
            "regression",
        }
    )
    for name, sig in linear.items():
        assert forest[name]["method_name"] == sig["method_name"], name
        assert set(forest[name]["inputs"]) == set(sig["inputs"]), name
        assert set(forest[name]["outputs"]) == set(sig["outputs"]), name


def test_forest_predicts_sensibly_over_rest_and_grpc(server, exported, tmp_path):
    examples, labels = _held_out_examples(exported)
    body = {"instances": [{"b64": base64.b64encode(e).decode()} for e in examples]}
    r = requests.post(f"{server.rest_url}/v1/models/taxi:predict", json=body, timeout=120)
    assert r.status_code == 200, r.text
    rest = np.array(r.json()["predictions"]).reshape(-1)
    assert rest.shape == (HELD_OUT_ROWS,) and np.all((rest >= 0) & (rest <= 1))
    # Held-out rows: the trees learned the tip rule (the taxi candidates reach AUC ~0.95).
    assert baselines.auc(labels, rest) > 0.85

    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "taxi"
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
    grpc_scores = tf.make_ndarray(stub.Predict(req, timeout=120).outputs["probabilities"])
    np.testing.assert_allclose(grpc_scores.reshape(-1), rest, rtol=1e-5)

    creq = classification_pb2.ClassificationRequest()
    creq.model_spec.name = "taxi"
    creq.model_spec.signature_name = "classification"
    for e in examples[:5]:
        creq.input.example_list.examples.add().ParseFromString(e)
    classes = stub.Classify(creq, timeout=60).result.classifications
    assert len(classes) == 5
    for c, p in zip(classes, rest[:5], strict=True):
        assert c.classes[1].score == pytest.approx(p, rel=1e-5)
    rreq = regression_pb2.RegressionRequest()
    rreq.model_spec.name = "taxi"
    rreq.model_spec.signature_name = "regression"
    rreq.input.CopyFrom(creq.input)
    values = [v.value for v in stub.Regress(rreq, timeout=60).result.regressions]
    np.testing.assert_allclose(values, rest[:5], rtol=1e-5)
    channel.close()

    # serving_raw: one plain-JSON value per raw feature, the same scores.
    _, rows, spec, _ = exported
    instances = []
    for row in rows[:5]:
        typed = {}
        for key in spec.raw_feature_keys:
            dtype = spec.raw_dtype(key)
            value = row.get(key, "")
            typed[key] = (
                value
                if dtype == "bytes"
                else (int(float(value or 0)) if dtype == "int64" else float(value or 0))
            )
        instances.append(typed)
    r = requests.post(
        f"{server.rest_url}/v1/models/taxi:predict",
        json={"signature_name": "serving_raw", "instances": instances},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    raw_scores = np.array(r.json()["predictions"]).reshape(-1)
    assert raw_scores.shape == (5,) and np.all((raw_scores >= 0) & (raw_scores <= 1))


def test_forest_training_prints_no_native_log(exported, capfd):
    """TF-DF's learner logs each tree from C++ (past Python's logging): captured, not printed."""
    _, _, spec, train = exported
    model = build_keras_model(hyperparameter_space((GRADIENT_BOOSTED_TREES,)), spec=spec)
    capfd.readouterr()
    fit_gradient_boosted_trees(model, train, spec)
    out, err = capfd.readouterr()
    assert "gradient_boosted_trees.cc" not in out + err and "kernel.cc" not in out + err
