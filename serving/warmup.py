"""Model warmup: replay a version's recorded requests before it is reported AVAILABLE.

TensorFlow's first call of a loaded signature instantiates and optimizes its function graph, so
the first request after a version switch is tens to hundreds of times slower than the next one.
TF Serving's answer (`--enable_model_warmup`, on by default) is a file in the SavedModel,
`assets.extra/tf_serving_warmup_requests`: a TFRecord of `PredictionLog` protos whose requests the
server runs while the version is still LOADING. This module reads that file with TF Serving's
rules (at most 1000 records; predict, classify, regress and multi_inference logs; any bad record
or failing request fails the load, so a version that cannot answer its own warmup never serves)
and runs the requests through the same signature functions the data plane calls.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

import model_layout as layout
from serving import codec
from serving.repository import Servable

log = logging.getLogger(__name__)

WARMUP_FILE = layout.WARMUP_REQUESTS_FILE
MAX_RECORDS = 1000  # TF Serving's kMaxNumRecords
DEFAULT_SIGNATURE = "serving_default"


class WarmupError(ValueError):
    """The warmup file is invalid or one of its requests failed; the version must not serve."""


@dataclass(frozen=True)
class WarmupResult:
    records: int
    seconds: float


def warmup_path(version_dir: str) -> str:
    return os.path.join(version_dir, WARMUP_FILE)


def read_warmup_records(path: str) -> list[prediction_log_pb2.PredictionLog]:
    """Parse every record of a warmup file; WarmupError on a bad record or too many."""
    import tensorflow as tf

    logs = []
    try:
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            if len(logs) >= MAX_RECORDS:
                raise WarmupError(
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}"
                )
            entry = prediction_log_pb2.PredictionLog()
            try:
                entry.ParseFromString(raw)
            except DecodeError as e:
                raise WarmupError(f"Failed to parse warmup record from {path}: {e}") from None
            logs.append(entry)
    except tf.errors.OpError as e:
        raise WarmupError(f"Failed to read warmup data file {path}: {e.message}") from None
    return logs


def _function(servable: Servable, signature_name: str) -> tuple[Callable, object]:
    name = signature_name or DEFAULT_SIGNATURE
    if name not in servable.functions:
        raise WarmupError(f'Warmup request names signature "{name}", which the model lacks')
    return servable.functions[name], servable.signature_defs[name]


def _run_examples(servable: Servable, spec, input_proto) -> None:
    import tensorflow as tf

    fn, sig = _function(servable, spec.signature_name)
    if len(sig.inputs) != 1:
        raise WarmupError(f"Signature {spec.signature_name!r} does not take one tf.Example input")
    examples = codec.examples_from_input(input_proto)
    fn(**{next(iter(sig.inputs)): tf.constant(examples)})


def replay(servable: Servable, entry: prediction_log_pb2.PredictionLog) -> None:
    """Run one logged request against the servable; the response is discarded."""
    import tensorflow as tf

    kind = entry.WhichOneof("log_type")
    if kind == "predict_log":
        request = entry.predict_log.request
        fn, _ = _function(servable, request.model_spec.signature_name)
        fn(**{k: tf.constant(codec.proto_to_ndarray(v)) for k, v in request.inputs.items()})
    elif kind == "classify_log":
        request = entry.classify_log.request
        _run_examples(servable, request.model_spec, request.input)
    elif kind == "regress_log":
        request = entry.regress_log.request
        _run_examples(servable, request.model_spec, request.input)
    elif kind == "multi_inference_log":
        request = entry.multi_inference_log.request
        for task in request.tasks:
            _run_examples(servable, task.model_spec, request.input)
    else:
        raise WarmupError(f"Unsupported log_type for warmup: {kind}")


def warm_up(servable: Servable, iterations: int = 1) -> WarmupResult | None:
    """Replay the version's warmup file `iterations` times; None when it has no such file."""
    path = warmup_path(servable.path)
    if not os.path.exists(path):
        log.info("No warmup data file found at %s", path)
        return None
    started = time.perf_counter()
    logs = read_warmup_records(path)
    for entry in logs:
        for _ in range(iterations):
            try:
                replay(servable, entry)
            except WarmupError:
                raise
            except Exception as e:  # noqa: BLE001 - any failing request fails the load
                raise WarmupError(
                    f"Warmup request failed for {path}: {type(e).__name__}: {e}"
                ) from None
    elapsed = time.perf_counter() - started
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path,
        len(logs),
        elapsed * 1e6,
    )
    return WarmupResult(len(logs), elapsed)


def warmup_hook(
    on_done: Callable[[Servable, WarmupResult], None] | None = None, iterations: int = 1
) -> Callable[[Servable], None]:
    """What the repository calls after loading a version and before reporting it AVAILABLE."""

    def hook(servable: Servable) -> None:
        result = warm_up(servable, iterations)
        if result is not None and on_done is not None:
            on_done(servable, result)

    return hook
