"""Custom TensorFlow ops a SavedModel needs registered before tf.saved_model.load can load it.

A gradient-boosted-trees model (TensorFlow Decision Forests, modules/model.py) runs its trees
through TF-DF's own ops (`SimpleMLInferenceOpWithHandle`, ...), which a Python process only knows
after TF-DF's op library is loaded; the real TF Serving binary links them in since 2.11. Every
process that loads a model (the model server, the Evaluator's TFMA, its Beam workers) asks
`register_ops_for(path)` first: it reads the op names the SavedModel lists and imports TF-DF only
when they name one of its ops, so a server of Keras models never pays TF-DF's import (~1 s).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

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


def construct_after_ops(saved_model_dir: str, construct: Callable[[], Any]) -> Any:
    """`construct()` (a model loader, e.g. TFMA's) once the ops `saved_model_dir` needs are
    registered. Module-level so that a Beam worker unpickling a partial of it imports this
    module and registers the ops in its own process before loading."""
    register_ops_for(saved_model_dir)
    return construct()
