"""Model warmup end to end: the Pusher writes TF Serving's warmup file from eval examples, the
file is TF Serving's format (TFRecord of PredictionLog), and a real server process replays it
before it reports a version AVAILABLE — counted in its metrics and logged as TF Serving logs it.
A broken warmup file fails the load (TF Serving's rule) and the serving version stays."""

from __future__ import annotations

# First: until tests/ has an __init__.py, a regular `tests` package that a later import puts on
# sys.path (IPython's extensions/tests) would shadow this directory.
from tests.serving_models import SAMPLE_ROW, ServerProcess, build_model, make_example  # isort: split

import os
import re
import shutil
import time

import pytest
import requests
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from pipeline.push import warmup_requests as wr
from pipeline.push.pusher import AtomicPusherExecutor
from serving import warmup
from serving.repository import load_servable

MODEL = "taxi"
SIGNATURES = {
    "serving_default",
    "serving_raw",
    "transform_features",
    "classification",
    "regression",
}


def _rows(n: int) -> list[bytes]:
    """n distinct tf.Examples; odd rows lack the optional `company`, as sparse CSV rows do."""
    out = []
    for i in range(n):
        row = {**SAMPLE_ROW, "trip_miles": 0.5 + i, "fare": 5.0 + 2 * i}
        if i % 2:
            row["company"] = None
        out.append(make_example(row))
    return out


def _read(path) -> list[prediction_log_pb2.PredictionLog]:
    logs = []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        entry = prediction_log_pb2.PredictionLog()
        entry.ParseFromString(raw)
        logs.append(entry)
    return logs


def _signature(entry: prediction_log_pb2.PredictionLog) -> str:
    kind = entry.WhichOneof("log_type")
    return getattr(entry, kind).request.model_spec.signature_name


def test_warmup_file_is_tf_servings_prediction_log_format(tmp_path):
    version = build_model(tmp_path / "1")
    examples = _rows(5)
    count = wr.write_warmup_requests(version, examples, MODEL)
    path = tmp_path / "1" / "assets.extra" / "tf_serving_warmup_requests"
    assert warmup.warmup_path(version) == str(path) and path.is_file()
    logs = _read(path)
    assert len(logs) == count == 2 * len(SIGNATURES)  # one example, then all five, per signature
    assert {_signature(e) for e in logs} == SIGNATURES
    kinds = {_signature(e): e.WhichOneof("log_type") for e in logs}
    assert kinds["classification"] == "classify_log" and kinds["regression"] == "regress_log"
    assert kinds["serving_default"] == kinds["serving_raw"] == "predict_log"
    for entry in logs:
        request = getattr(entry, entry.WhichOneof("log_type")).request
        assert request.model_spec.name == MODEL
    batches = []
    for entry in logs:
        if _signature(entry) == "serving_default":
            tensor = entry.predict_log.request.inputs["examples"]
            batches.append(list(tensor.string_val))
        if _signature(entry) == "classification":
            got = list(entry.classify_log.request.input.example_list.examples)
            parsed = [example_pb2.Example.FromString(b) for b in examples]
            assert got in (parsed[:1], parsed)
    assert batches == [examples[:1], examples]
    # serving_raw: one tensor per raw feature, typed as the signature says; a row without
    # `company` sends "" (the raw signature's "missing").
    raw = [e.predict_log.request for e in logs if _signature(e) == "serving_raw"][-1]
    arrays = {k: tf.make_ndarray(v) for k, v in raw.inputs.items()}
    assert set(arrays) == set(SAMPLE_ROW)
    assert arrays["trip_miles"].tolist() == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5])
    assert arrays["company"].tolist() == [b"Flash Cab", b"", b"Flash Cab", b"", b"Flash Cab"]
    assert arrays["trip_start_hour"].dtype.kind == "i"


def test_replay_runs_every_record_against_the_loaded_version(tmp_path):
    path = build_model(tmp_path / "7")
    wr.write_warmup_requests(path, _rows(3), MODEL)
    servable = load_servable(MODEL, 7, path)
    calls = []
    for name, fn in list(servable.functions.items()):

        def counted(*args, _fn=fn, _name=name, **kwargs):
            calls.append(_name)
            return _fn(*args, **kwargs)

        servable.functions[name] = counted
    result = warmup.warm_up(servable, iterations=2)
    assert result is not None and result.records == 2 * len(SIGNATURES)
    assert sorted(calls) == sorted(list(SIGNATURES) * 4)  # 2 records x 2 iterations each
    assert warmup.warm_up(load_servable(MODEL, 1, build_model(tmp_path / "1"))) is None


def _bad_file(path: str, kind: str) -> None:
    target = os.path.join(path, warmup.WARMUP_FILE)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with tf.io.TFRecordWriter(target) as writer:
        if kind == "garbage":
            writer.write(b"\xff\xfe not a PredictionLog")
        elif kind == "session_run":
            writer.write(
                prediction_log_pb2.PredictionLog(
                    session_run_log=prediction_log_pb2.SessionRunLog()
                ).SerializeToString()
            )
        elif kind == "unknown_signature":
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = "no_such_signature"
            writer.write(
                prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                ).SerializeToString()
            )
        elif kind == "wrong_input":
            request = predict_pb2.PredictRequest()
            request.inputs["not_an_input"].CopyFrom(tf.make_tensor_proto([1.0]))
            writer.write(
                prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                ).SerializeToString()
            )
        elif kind == "too_many":
            request = predict_pb2.PredictRequest()
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([make_example(SAMPLE_ROW)]))
            record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            ).SerializeToString()
            for _ in range(warmup.MAX_RECORDS + 1):
                writer.write(record)
    if kind == "truncated":  # a valid file cut short, as by an interrupted copy
        wr.write_warmup_requests(path, _rows(2), MODEL)
        with open(target, "rb") as f:
            data = f.read()
        with open(target, "wb") as f:
            f.write(data[:-20])


@pytest.mark.parametrize(
    "kind, message",
    [
        ("garbage", "Failed to parse warmup record"),
        ("truncated", "Failed to read warmup data file"),
        ("session_run", "Unsupported log_type for warmup: session_run_log"),
        ("unknown_signature", 'signature "no_such_signature"'),
        ("wrong_input", "Warmup request failed"),
        ("too_many", "exceeds the maximum (1000)"),
    ],
)
def test_a_bad_warmup_file_fails_the_load(tmp_path, kind, message):
    path = build_model(tmp_path / "3")
    _bad_file(path, kind)
    with pytest.raises(warmup.WarmupError, match=re.escape(message)):
        warmup.warm_up(load_servable(MODEL, 3, path))


def _metric(server: ServerProcess, name: str, **labels: str) -> float | None:
    text = requests.get(server.rest_url + "/monitoring/prometheus/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _status(server: ServerProcess) -> dict[str, dict]:
    body = requests.get(f"{server.rest_url}/v1/models/{MODEL}", timeout=10).json()
    return {s["version"]: s for s in body["model_version_status"]}


def test_server_replays_warmup_before_a_version_is_available(tmp_path):
    base, staging = tmp_path / MODEL, tmp_path / "staging"
    wr.write_warmup_requests(build_model(base / "1", bias=-10.0), _rows(4), MODEL)
    records = 2 * len(SIGNATURES)
    server = ServerProcess(
        f"--model_name={MODEL}", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0.1"
    ).wait_ready()
    cold = ServerProcess(
        f"--model_name={MODEL}",
        f"--model_base_path={base}",
        "--file_system_poll_wait_seconds=0",
        "--enable_model_warmup=false",
    ).wait_ready()
    try:
        # Ready (port open) means the initial version loaded, and warmup came first.
        assert _metric(server, "tfserving_model_warmup_requests_total", version="1") == records
        assert _metric(server, "tfserving_model_warmup_seconds", version="1") > 0
        assert _metric(cold, "tfserving_model_warmup_requests_total") is None
        assert f"Number of warmup records read: {records}." in server.log()
        assert "warmup" not in cold.log().lower()
        # Warmup requests are not user traffic: no request or score samples yet.
        assert _metric(server, "tfserving_request_count_total") is None
        assert _metric(server, "tfserving_prediction_score_count") is None

        # A new version: the first time its status says AVAILABLE, its warmup has already run.
        version = build_model(staging / "2", bias=10.0)
        wr.write_warmup_requests(version, _rows(2), MODEL)
        os.rename(version, base / "2")
        deadline = time.time() + 60
        while _status(server).get("2", {}).get("state") != "AVAILABLE":
            assert time.time() < deadline, server.log()
            time.sleep(0.02)
        assert _metric(server, "tfserving_model_warmup_requests_total", version="2") == records
        assert server.log().count("Number of warmup records read") == 2

        # A version whose warmup fails never serves; the previous one stays.
        version = build_model(staging / "3", bias=0.0)
        _bad_file(version, "unknown_signature")
        os.rename(version, base / "3")
        deadline = time.time() + 60
        while _status(server).get("3", {}).get("state") != "END":
            assert time.time() < deadline, server.log()
            time.sleep(0.05)
        error = _status(server)["3"]["status"]["error_message"]
        assert "WarmupError" in error and "no_such_signature" in error
        answer = requests.post(
            f"{server.rest_url}/v1/models/{MODEL}:predict",
            json={"instances": [{"b64": _b64(make_example(SAMPLE_ROW))}]},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0][0] > 0.99  # version 2 (bias +10) answers
    finally:
        server.stop()
        cold.stop()


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


def _examples_artifact(root, rows: list[bytes]) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = '["train", "eval"]'
    for split, part in (("train", rows[:1]), ("eval", rows)):
        os.makedirs(root / "examples" / f"Split-{split}")
        path = str(root / "examples" / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for raw in part:
                writer.write(raw)
    return examples


def test_pusher_executor_pushes_a_version_with_warmup_from_eval_examples(tmp_path):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "Trainer" / "model" / "5")
    build_model(os.path.join(model.uri, "Format-Serving"))
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "Pusher" / "pushed_model" / "6")
    rows = _rows(wr.NUM_EXAMPLES + 4)
    base = tmp_path / "serving_model" / MODEL
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base))
    )
    AtomicPusherExecutor().Do(
        {
            "model": [model],
            "model_blessing": [blessing],
            wr.EXAMPLES_KEY: [_examples_artifact(tmp_path, rows)],
        },
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination), "custom_config": "null"},
    )
    (version,) = os.listdir(base)
    logs = _read(base / version / wr.WARMUP_REQUESTS_FILE)
    default = [e.predict_log.request for e in logs if _signature(e) == "serving_default"]
    # The eval split's first NUM_EXAMPLES rows, not the train split's.
    assert list(default[-1].inputs["examples"].string_val) == rows[: wr.NUM_EXAMPLES]
    assert {e.predict_log.request.model_spec.name for e in logs if e.HasField("predict_log")} == {
        MODEL
    }
    # The Trainer's artifact is untouched; the PushedModel copy is what was pushed.
    assert not os.path.exists(os.path.join(model.uri, "Format-Serving", wr.WARMUP_REQUESTS_FILE))
    assert os.path.isfile(os.path.join(pushed.uri, wr.WARMUP_REQUESTS_FILE))
    result = warmup.warm_up(load_servable(MODEL, int(version), str(base / version)))
    assert result is not None and result.records == len(logs)
    # Without examples (e.g. a pipeline built before warmup) the push works as before.
    shutil.rmtree(base)
    pushed.uri = str(tmp_path / "Pusher" / "pushed_model" / "7")
    AtomicPusherExecutor().Do(
        {"model": [model], "model_blessing": [blessing]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination), "custom_config": "null"},
    )
    (version,) = os.listdir(base)
    assert not os.path.exists(base / version / wr.WARMUP_REQUESTS_FILE)


@pytest.mark.slow
def test_pipeline_pushed_model_carries_warmup_that_replays(small_pipeline):
    base = small_pipeline.serving_model_dir
    versions = sorted(int(v) for v in os.listdir(base) if v.isdigit())
    assert versions, "the small pipeline pushed nothing"
    path = os.path.join(base, str(versions[-1]))
    logs = _read(os.path.join(path, wr.WARMUP_REQUESTS_FILE))
    assert {_signature(e) for e in logs} == SIGNATURES
    result = warmup.warm_up(load_servable(MODEL, versions[-1], path))
    assert result is not None and result.records == len(logs) == 2 * len(SIGNATURES)
