"""Small but real SavedModels with the Trainer's serving contract, and `mlops serve` as a process.

For the serving tests, bench/serving_bench.py and the docs checks, which all need several models
and versions that load in well under a second, long before the pipeline has pushed anything.
These are real TF2 SavedModels (a tf.Module of tf.functions) with the same signature names,
input names, dtypes and shapes as modules/trainer.py exports, so a server that serves these
serves the pipeline's model too. The `bias` makes versions tell apart:
a large negative bias answers ~0, a large positive one ~1.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from modules import features
from serving.dataplane import CLASSIFY_METHOD, REGRESS_METHOD
from serving_api.examples import row_to_example

_TF_DTYPES = {"int64": tf.int64, "float": tf.float32, "bytes": tf.string}
_DEFAULTS = {"int64": 0, "float": 0.0, "bytes": ""}


def raw_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """Parsing spec for the raw features; missing values default so sparse CSV rows still parse."""
    return {
        key: tf.io.FixedLenFeature(
            [],
            _TF_DTYPES[features.raw_dtype(key)],
            default_value=_DEFAULTS[features.raw_dtype(key)],
        )
        for key in features.RAW_FEATURE_KEYS
    }


class _TaxiLikeModel(tf.Module):
    def __init__(self, bias: float) -> None:
        super().__init__()
        self.bias = tf.Variable(bias, dtype=tf.float32)
        self.weights = tf.Variable(
            [0.001 * (i + 1) for i in range(len(features.DENSE_FLOAT_FEATURE_KEYS))],
            dtype=tf.float32,
        )

    def _transform(self, raw: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = {}
        for key in features.RAW_FEATURE_KEYS:
            value = raw[key]
            if value.dtype == tf.string:
                value = tf.cast(
                    tf.strings.to_hash_bucket_fast(value, features.VOCAB_SIZE), tf.int64
                )
            out[features.transformed_name(key)] = tf.cast(value, tf.float32)
        return out

    def _probabilities(self, raw: Mapping[str, tf.Tensor]) -> tf.Tensor:
        xf = self._transform(raw)
        dense = tf.stack(
            [xf[features.transformed_name(k)] for k in features.DENSE_FLOAT_FEATURE_KEYS], axis=1
        )
        logit = tf.reduce_sum(dense * self.weights, axis=1, keepdims=True) + self.bias
        return tf.sigmoid(logit)

    def _parse(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return tf.io.parse_example(serialized, raw_feature_spec())

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        return {"probabilities": self._probabilities(self._parse(examples))}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], _TF_DTYPES[features.raw_dtype(k)], name=k)
            for k in features.RAW_FEATURE_KEYS
        ]
    )
    def serve_raw(self, *args):
        return {
            "probabilities": self._probabilities(
                dict(zip(features.RAW_FEATURE_KEYS, args, strict=True))
            )
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
        return self._transform(self._parse(examples))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        p = self._probabilities(self._parse(inputs))
        batch = tf.shape(p)[0]
        classes = tf.tile(tf.constant([["0", "1"]]), [batch, 1])
        return {"classes": classes, "scores": tf.concat([1.0 - p, p], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": self._probabilities(self._parse(inputs))}


def _raw_signature(module: _TaxiLikeModel):
    # tf.function with *args names inputs after the TensorSpec names, which is what we want.
    return module.serve_raw.get_concrete_function()


def build_model(export_dir: str | os.PathLike, bias: float = 0.0) -> str:
    """Write one model version to `export_dir` (e.g. base/1) and return the path."""
    export_dir = os.fspath(export_dir)
    module = _TaxiLikeModel(bias)
    signatures = {
        "serving_default": module.serve_examples.get_concrete_function(),
        "serving_raw": _raw_signature(module),
        "transform_features": module.transform_features.get_concrete_function(),
        "classification": module.classify.get_concrete_function(),
        "regression": module.regress.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    _patch_method_names(
        export_dir, {"classification": CLASSIFY_METHOD, "regression": REGRESS_METHOD}
    )
    return export_dir


def _patch_method_names(export_dir: str, methods: Mapping[str, str]) -> None:
    """TF2 saves every signature as predict; TF Serving's Classify/Regress need the method names."""
    pb_path = os.path.join(export_dir, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(pb_path, "rb") as f:
        sm.ParseFromString(f.read())
    for name, method in methods.items():
        sm.meta_graphs[0].signature_def[name].method_name = method
    with open(pb_path, "wb") as f:
        f.write(sm.SerializeToString())


def make_example(row: Mapping[str, object]) -> bytes:
    """Serialize one raw row (every key in it) as the tf.Example serving_default parses."""
    return row_to_example(row, row.keys())


SAMPLE_ROW: dict[str, object] = {
    "trip_miles": 1.5,
    "fare": 7.25,
    "trip_seconds": 540,
    "pickup_latitude": 41.88,
    "pickup_longitude": -87.63,
    "dropoff_latitude": 41.9,
    "dropoff_longitude": -87.64,
    "trip_start_hour": 19,
    "trip_start_day": 5,
    "trip_start_month": 3,
    "pickup_census_tract": 17031081500,
    "dropoff_census_tract": 17031081600,
    "pickup_community_area": 8,
    "dropoff_community_area": 32,
    "payment_type": "Credit Card",
    "company": "Flash Cab",
}
"""A complete raw row (every RAW_FEATURE_KEY) with realistic values."""


# ---- a real server process for tests and the benchmark -------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Set by the test suite (tests/conftest.py): (cli_args, log_path) -> a started process with
# Popen's pid, poll, wait, send_signal, terminate and kill, or None for a new interpreter.
fork_launcher: Callable[[list[str], str], Any] | None = None


class ServerProcess:
    """`mlops serve` as a subprocess on free ports; ready once the REST status answers.

    Under the tests the process comes from `fork_launcher` (tests/server_forks.py: forked from a
    process that has already imported the server); `fresh=True` always starts a new
    interpreter."""

    def __init__(
        self,
        *args: str,
        log_path: str | None = None,
        rest_host: str = "127.0.0.1",
        fresh: bool = False,
    ) -> None:
        import subprocess
        import sys

        self.grpc_port = free_port()
        self.rest_port = free_port()
        self.rest_host = rest_host
        # A log the caller did not name is ours: stop() keeps its text and removes the file, so
        # a test run leaves no server logs behind in the temp directory.
        self._owns_log = log_path is None
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"mlops-serve-{self.rest_port}-", suffix=".log")
            os.close(fd)
        self.log_path = log_path
        self._stopped_log: str | None = None
        cli_args = [
            "serve",
            f"--port={self.grpc_port}",
            f"--rest_api_port={self.rest_port}",
            f"--rest_api_host={rest_host}",
            *args,
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        launched = None if fresh or fork_launcher is None else fork_launcher(cli_args, log_path)
        self.proc: Any = launched
        if launched is None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlops.cli", *cli_args],
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )

    @property
    def rest_url(self) -> str:
        return f"http://{self.rest_host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, timeout: float = 90.0) -> ServerProcess:
        import time
        import urllib.error
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(
                    self.rest_url + "/monitoring/prometheus/metrics", timeout=1
                ):
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def rss_bytes(self) -> int:
        """The server's resident set size, from /proc/<pid>/status (VmRSS)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def log(self) -> str:
        return self.log_all()[-5000:]

    def log_all(self) -> str:
        if self._stopped_log is not None:
            return self._stopped_log
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self._owns_log and self._stopped_log is None:
            self._stopped_log = self.log_all()
            os.remove(self.log_path)
