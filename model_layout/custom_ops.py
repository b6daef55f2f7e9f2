"""Custom TensorFlow ops a SavedModel needs registered before tf.saved_model.load can load it.

A gradient-boosted-trees model (TensorFlow Decision Forests, modules/model.py) runs its trees
through TF-DF's own ops (`SimpleMLInferenceOpWithHandle`, ...), which a Python process only knows
after TF-DF's op library is loaded; the real TF Serving binary links them in since 2.11. The
model server asks `register_ops_for(path)` before loading a version: it reads the op names the
SavedModel lists and imports TF-DF only when they name one of its ops, so a server of Keras models
never pays TF-DF's import (~1 s). The pipeline needs no hook: TFMA (the Evaluator, in every Beam
worker) and tf.Transform import TF-DF themselves whenever it is installed, to register its ops.
"""

from __future__ import annotations

import os

# Every TF-DF op's name starts with this (SimpleMLCreateModelResource, SimpleMLInference...).
DECISION_FOREST_OP_PREFIX = "SimpleML"
SAVED_MODEL_PB = "saved_model.pb"


def op_names(saved_model_dir: str | os.PathLike) -> set[str]:
    """The ops a SavedModel's meta graphs use (the op list TF stores beside the graph); empty
    when there is no readable saved_model.pb (loading then fails with its own error)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(os.fspath(saved_model_dir), SAVED_MODEL_PB)
    saved_model = saved_model_pb2.SavedModel()
    try:
        with open(path, "rb") as f:
            saved_model.ParseFromString(f.read())
    except (OSError, ValueError):
        return set()
    return {
        op.name for meta in saved_model.meta_graphs for op in meta.meta_info_def.stripped_op_list.op
    }


def needs_decision_forest_ops(saved_model_dir: str | os.PathLike) -> bool:
    """Whether the SavedModel runs TF-DF's ops (a gradient-boosted-trees model)."""
    return any(name.startswith(DECISION_FOREST_OP_PREFIX) for name in op_names(saved_model_dir))


def register_decision_forest_ops() -> None:
    """Load TF-DF's inference op library into this process (idempotent: Python caches the
    import). Loading the op library alone, not the Keras API, is all tf.saved_model.load needs."""
    import tensorflow_decision_forests.tensorflow.ops.inference.op_dynamic  # noqa: F401


def register_ops_for(saved_model_dir: str | os.PathLike) -> bool:
    """Register the custom ops the SavedModel needs before it is loaded; True when it needed
    some (TF-DF's), False for plain TensorFlow models (nothing imported)."""
    if not needs_decision_forest_ops(saved_model_dir):
        return False
    register_decision_forest_ops()
    return True
