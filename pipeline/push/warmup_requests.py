"""TF Serving warmup requests, written by the Pusher into every pushed version.

A server that loads a new version answers its first request slowly: TensorFlow instantiates
each signature's function graph on first use. TF Serving (and `mlops serve`) replay the requests
in `assets.extra/tf_serving_warmup_requests` while the version is LOADING, so the first user
request meets a warm model. The file is TF Serving's documented format: a TFRecord of
`tensorflow.serving.PredictionLog` protos. Here it is built from a few eval examples, one request
of one example and one of several for every Predict, Classify and Regress signature of the model,
each in the encoding that signature takes (serialized tf.Examples, or one tensor per raw
feature). This module runs inside the pipeline image, which has no serving/ code; it only shares
TF Serving's file format with serving/warmup.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence

import tensorflow as tf
from absl import logging
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)
from tfx.types import artifact, artifact_utils

import model_layout as layout

WARMUP_REQUESTS_FILE = layout.WARMUP_REQUESTS_FILE
EXAMPLES_KEY = "examples"  # the Pusher's optional input channel of eval examples
EVAL_SPLIT = "eval"
NUM_EXAMPLES = 8

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

_DEFAULTS = {types_pb2.DT_STRING: b"", types_pb2.DT_INT64: 0, types_pb2.DT_INT32: 0}


def read_examples(
    examples: Sequence[artifact.Artifact], split: str = EVAL_SPLIT, limit: int = NUM_EXAMPLES
) -> list[bytes]:
    """The first `limit` serialized tf.Examples of a split of an Examples artifact."""
    split_dir = artifact_utils.get_split_uri(list(examples), split)
    files = sorted(tf.io.gfile.glob(os.path.join(split_dir, "*")))
    if not files:
        raise ValueError(f"No {split} examples under {split_dir}")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [bytes(r) for r in dataset.as_numpy_iterator()]


def signature_defs(model_dir: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The serving signatures as TF Serving reads them (the 'serve' meta graph)."""
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    meta = next(
        (m for m in saved_model.meta_graphs if "serve" in m.meta_info_def.tags),
        saved_model.meta_graphs[0],
    )
    return dict(meta.signature_def)


def _feature_values(example: example_pb2.Example, key: str) -> list:
    feature = example.features.feature.get(key)
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def _raw_columns(
    sig: meta_graph_pb2.SignatureDef, examples: list[example_pb2.Example]
) -> dict[str, tf.Tensor] | None:
    """One 1-D tensor per signature input, taken feature by feature from the examples; a
    missing value becomes the dtype's zero, which raw signatures read as "missing"."""
    columns = {}
    for name, info in sig.inputs.items():
        if info.tensor_shape.unknown_rank or len(info.tensor_shape.dim) not in (1, 2):
            return None
        values = []
        for example in examples:
            found = _feature_values(example, name)
            values.append(found[0] if found else _DEFAULTS.get(info.dtype, 0.0))
        tensor = tf.constant(values, dtype=tf.dtypes.as_dtype(info.dtype))
        if len(info.tensor_shape.dim) == 2:
            tensor = tf.reshape(tensor, [-1, 1])
        columns[name] = tensor
    return columns


def _predict_request(
    model_name: str, signature: str, sig: meta_graph_pb2.SignatureDef, batch: list[bytes]
) -> predict_pb2.PredictRequest | None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if len(sig.inputs) == 1 and next(iter(sig.inputs.values())).dtype == types_pb2.DT_STRING:
        request.inputs[next(iter(sig.inputs))].CopyFrom(tf.make_tensor_proto(batch, tf.string))
        return request
    columns = _raw_columns(sig, [example_pb2.Example.FromString(b) for b in batch])
    if columns is None:
        return None
    for name, tensor in columns.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(tensor))
    return request


def warmup_logs(
    signatures: dict[str, meta_graph_pb2.SignatureDef],
    examples: Sequence[bytes],
    model_name: str = "",
) -> list[prediction_log_pb2.PredictionLog]:
    """Per signature, a request with the first example and one with all of them."""
    examples = list(examples)
    if not examples:
        return []
    batches = [examples[:1]] + ([examples] if len(examples) > 1 else [])
    logs = []
    for signature, sig in sorted(signatures.items()):
        for batch in batches:
            entry = prediction_log_pb2.PredictionLog()
            if sig.method_name in (CLASSIFY_METHOD, REGRESS_METHOD):
                if sig.method_name == CLASSIFY_METHOD:
                    request = classification_pb2.ClassificationRequest()
                    target = entry.classify_log.request
                else:
                    request = regression_pb2.RegressionRequest()
                    target = entry.regress_log.request
                request.model_spec.name = model_name
                request.model_spec.signature_name = signature
                request.input.example_list.examples.extend(
                    example_pb2.Example.FromString(b) for b in batch
                )
                target.CopyFrom(request)
            elif sig.method_name == PREDICT_METHOD:
                request = _predict_request(model_name, signature, sig, batch)
                if request is None:
                    logging.info("No warmup request for signature %s: inputs not 1-D", signature)
                    break
                entry.predict_log.request.CopyFrom(request)
            else:
                break
            logs.append(entry)
    return logs


def write_warmup_requests(model_dir: str, examples: Iterable[bytes], model_name: str = "") -> int:
    """Write <model_dir>/assets.extra/tf_serving_warmup_requests; returns the record count."""
    logs = warmup_logs(signature_defs(model_dir), list(examples), model_name)
    path = os.path.join(model_dir, WARMUP_REQUESTS_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for entry in logs:
            writer.write(entry.SerializeToString())
    logging.info("Wrote %d warmup requests to %s", len(logs), path)
    return len(logs)


def staged_with_warmup(
    model_path: str, examples: Sequence[artifact.Artifact], tmp_dir: str, model_name: str = ""
) -> str:
    """A copy of the model under `tmp_dir` with warmup requests from the eval examples, or
    `model_path` itself when there are no examples. The Trainer's artifact stays untouched and
    the push still publishes one complete directory."""
    if not examples:
        return model_path
    staged = os.path.join(tmp_dir, "model-with-warmup")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(model_path, staged)
    write_warmup_requests(staged, read_examples(examples), model_name)
    return staged
