"""A stand-in SavedModel for any dataset spec: real, tiny, loads in well under a second.

tests/serving_models.py's models speak taxi's features; the multi-model tests also serve a second
dataset (penguins) whose features, kinds and classes differ. This model parses exactly the spec's
raw features (kinds from its schema) from serialized tf.Examples on `serving_default` and answers
`probabilities` [n, num_classes] (binary: [n, 1], as the Trainer exports), so a client that
encodes rows with the wrong spec gets the server's error, not an answer. The `bias` shifts the
last class's score, so two versions tell apart.
"""

from __future__ import annotations

import os

import tensorflow as tf

from modules.dataset_spec import DatasetSpec

_TF_DTYPES = {"int64": tf.int64, "float": tf.float32, "bytes": tf.string}
_DEFAULTS = {"int64": 0, "float": 0.0, "bytes": ""}


class _SpecModel(tf.Module):
    def __init__(self, spec: DatasetSpec, bias: float) -> None:
        super().__init__()
        self.keys = list(spec.raw_feature_keys)
        self.kinds = {k: spec.raw_dtype(k) for k in self.keys}
        self.outputs = 1 if spec.num_classes <= 2 else spec.num_classes
        self.bias = tf.Variable(bias, dtype=tf.float32)

    def _parse(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        spec = {
            k: tf.io.FixedLenFeature([], _TF_DTYPES[kind], default_value=_DEFAULTS[kind])
            for k, kind in self.kinds.items()
        }
        return tf.io.parse_example(serialized, spec)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        parsed = self._parse(examples)
        numeric = [
            tf.cast(parsed[k], tf.float32) for k in self.keys if self.kinds[k] != "bytes"
        ] or [tf.zeros_like(tf.cast(tf.shape(examples)[:1], tf.float32))]
        signal = 0.001 * tf.add_n(numeric)
        logits = tf.stack([signal * (i + 1) for i in range(self.outputs)], axis=1)
        logits += tf.one_hot(self.outputs - 1, self.outputs) * self.bias
        if self.outputs == 1:
            return {"probabilities": tf.sigmoid(logits)}
        return {"probabilities": tf.nn.softmax(logits)}


def build_spec_model(export_dir: str | os.PathLike, spec: DatasetSpec, bias: float = 0.0) -> str:
    """Write one version of `spec`'s stand-in model to `export_dir` (e.g. base/1)."""
    export_dir = os.fspath(export_dir)
    module = _SpecModel(spec, bias)
    tf.saved_model.save(
        module,
        export_dir,
        signatures={"serving_default": module.serve_examples.get_concrete_function()},
    )
    return export_dir
