"""The Evaluator's executor, minus the work a re-run on unchanged data and code does not need.

When the candidate model is the baseline itself (the Trainer's result was cached and the
LatestBlessedModelResolver returns that same, already blessed model), evaluating it against
itself cannot change anything: the change threshold can never pass, so it would not be blessed
again and nothing would be pushed. TFMA would still load the model twice and run the whole eval
split through Beam. This executor records that outcome directly instead: a not-blessed blessing
that names the candidate and the baseline (as TFX's own executor does), and an evaluation
holding only a failed validation result (what the run report and TFMA's readers expect).
Any other candidate is evaluated by TFX's executor, and then held to the Trainer's comparison
with the run's baselines (modules/baselines.py): a model that did not beat them is not blessed,
whatever TFMA's thresholds said, and the comparison is copied into the evaluation, where the run
summary and the model card read it.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
from tensorflow_model_analysis.proto import validation_result_pb2
from tfx import types
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from modules import baselines

# The blessing's custom property holding the comparison's one-line decision.
BASELINE_DECISION_KEY = "baseline_decision"


def candidate_is_baseline(input_dict: dict[str, list[types.Artifact]]) -> bool:
    """True when the Evaluator's candidate and baseline are the same model artifact."""
    models = input_dict.get(standard_component_specs.MODEL_KEY) or []
    baselines = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
    if len(models) != 1 or len(baselines) != 1:
        return False
    model, baseline = models[0], baselines[0]
    if model.id and baseline.id:
        return model.id == baseline.id
    return model.uri == baseline.uri


class SkipSelfEvaluationExecutor(evaluator_executor.Executor):
    """TFX's Evaluator executor, short-circuited when the candidate is the baseline."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        if not candidate_is_baseline(input_dict):
            super().Do(input_dict, output_dict, exec_properties)
            apply_baseline_comparison(input_dict, output_dict)
            return
        evaluation_uri = artifact_utils.get_single_uri(output_dict[constants.EVALUATION_KEY])
        write_failed_validation_result(evaluation_uri)
        if standard_component_specs.BLESSING_KEY not in output_dict:
            return
        model = input_dict[standard_component_specs.MODEL_KEY][0]
        blessing = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.BLESSING_KEY]
        )
        c = constants
        for uri_key, id_key in (
            (c.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, c.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY),
            (c.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, c.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY),
        ):
            blessing.set_string_custom_property(uri_key, model.uri)
            blessing.set_int_custom_property(id_key, model.id)
        if "current_component_id" in exec_properties:
            blessing.set_string_custom_property(
                "component_id", exec_properties["current_component_id"]
            )
        io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), "")
        blessing.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.NOT_BLESSED_VALUE
        )


def apply_baseline_comparison(
    input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]]
) -> dict | None:
    """Copy the Trainer's comparison into the evaluation and withhold the blessing when the
    exported model did not beat the baselines. None: the model has no comparison."""
    model_uri = artifact_utils.get_single_uri(input_dict[standard_component_specs.MODEL_KEY])
    comparison = baselines.read_comparison(model_uri)
    if comparison is None:
        return None
    evaluation_uri = artifact_utils.get_single_uri(output_dict[constants.EVALUATION_KEY])
    baselines.write_comparison(evaluation_uri, comparison)
    if standard_component_specs.BLESSING_KEY not in output_dict:
        return comparison
    blessing = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.BLESSING_KEY]
    )
    blessing.set_string_custom_property(BASELINE_DECISION_KEY, comparison["decision"])
    if not comparison["blessable"]:
        blessed_file = os.path.join(blessing.uri, constants.BLESSED_FILE_NAME)
        if tf.io.gfile.exists(blessed_file):
            tf.io.gfile.remove(blessed_file)
        io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), "")
        blessing.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.NOT_BLESSED_VALUE
        )
    return comparison


def write_failed_validation_result(evaluation_uri: str) -> None:
    """A failed TFMA ValidationResult where tfma.load_validation_result looks for it."""
    result = validation_result_pb2.ValidationResult(validation_ok=False)
    tf.io.gfile.makedirs(evaluation_uri)
    with tf.io.TFRecordWriter(os.path.join(evaluation_uri, "validations.tfrecord")) as writer:
        writer.write(result.SerializeToString())
