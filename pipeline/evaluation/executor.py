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

BatchEvaluationExecutor (the default, `--evaluator batch`) evaluates the candidate in large
batches with numpy instead of TFMA's per-example Beam pipeline when every metric and slice of the
eval config is one pipeline/evaluation/batch.py reproduces; the output, validation and blessing
are TFMA's and TFX's (docs/design.md, "The Evaluator"). Anything else falls back to TFX's
executor, unchanged.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import validation_result_pb2
from tfx import types
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils, path_utils, proto_utils

from modules import baselines, importance
from pipeline.evaluation import batch

_LOG = logging.getLogger(__name__)

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
            self._evaluate(input_dict, output_dict, exec_properties)
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
        stamp_blessing(blessing, model, model, exec_properties, blessed=False)

    def _evaluate(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """TFX's executor: TFMA over Beam."""
        super().Do(input_dict, output_dict, exec_properties)


class BatchEvaluationExecutor(SkipSelfEvaluationExecutor):
    """The same executor, evaluating in numpy batches when the eval config allows it
    (pipeline/evaluation/batch.py), else through TFMA exactly as SkipSelfEvaluationExecutor."""

    def _evaluate(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        plan = batch_plan(input_dict, exec_properties)
        if isinstance(plan, str):
            _LOG.info("Evaluator: TFMA (%s)", plan)
            super()._evaluate(input_dict, output_dict, exec_properties)
            return
        eval_config, files, model_paths, run_validation = plan
        evaluation_uri = artifact_utils.get_single_uri(output_dict[constants.EVALUATION_KEY])
        try:
            result = batch.evaluate(eval_config, files, model_paths, evaluation_uri)
        except batch.Unsupported as e:
            _LOG.info("Evaluator: TFMA (%s)", e)
            super()._evaluate(input_dict, output_dict, exec_properties)
            return
        _LOG.info("Evaluator: batch path, validation_ok=%s", result.validation_ok)
        if run_validation:
            write_blessing(input_dict, output_dict, exec_properties, evaluation_uri)


def batch_plan(
    input_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]
) -> tuple[tfma.EvalConfig, list[str], dict[str, str], bool] | str:
    """What TFX's executor would hand TFMA, for the batch path: (the eval config with TFX's and
    TFMA's defaults applied, the eval split's files, model spec name -> serving model path,
    whether to validate), or why the batch path cannot run (a string)."""
    config_json = exec_properties.get(standard_component_specs.EVAL_CONFIG_KEY)
    if not config_json or standard_component_specs.MODEL_KEY not in input_dict:
        return "no eval_config or no model"
    if exec_properties.get(standard_component_specs.MODULE_FILE_KEY) or exec_properties.get(
        standard_component_specs.MODULE_PATH_KEY
    ):
        return "a user module (custom extractors or eval shared model)"
    if standard_component_specs.SCHEMA_KEY in input_dict:
        return "a schema input"
    has_baseline = bool(input_dict.get(standard_component_specs.BASELINE_MODEL_KEY))
    eval_config = tfma.EvalConfig()
    proto_utils.json_to_proto(config_json, eval_config)
    # As TFX's executor, then TFMA's ExtractEvaluateAndWriteResults.
    eval_config = tfma.utils.update_eval_config_with_defaults(
        eval_config, has_baseline=has_baseline, rubber_stamp=True
    )
    tfma.utils.verify_eval_config(eval_config)
    eval_config = tfma.utils.update_eval_config_with_defaults(
        eval_config, has_baseline=has_baseline, rubber_stamp=False
    )
    reason = batch.unsupported_reason(eval_config)
    if reason:
        return reason
    run_validation = bool(
        tfma.metrics.metric_thresholds_from_metrics_specs(
            eval_config.metrics_specs, eval_config=eval_config
        )
    )
    model_paths = {}
    for spec in eval_config.model_specs:
        key = (
            standard_component_specs.BASELINE_MODEL_KEY
            if spec.is_baseline
            else standard_component_specs.MODEL_KEY
        )
        artifact = artifact_utils.get_single_instance(input_dict[key])
        model_paths[spec.name] = path_utils.serving_model_path(
            artifact.uri, path_utils.is_old_model_artifact(artifact)
        )
    splits = json_utils.loads(
        exec_properties.get(standard_component_specs.EXAMPLE_SPLITS_KEY, "null")
    ) or ["eval"]
    files = []
    for split in splits:
        for uri in artifact_utils.get_split_uris(
            input_dict[standard_component_specs.EXAMPLES_KEY], split
        ):
            files.extend(batch.split_files(uri))
    return eval_config, files, model_paths, run_validation


def write_blessing(
    input_dict: dict[str, list[types.Artifact]],
    output_dict: dict[str, list[types.Artifact]],
    exec_properties: dict[str, Any],
    evaluation_uri: str,
) -> None:
    """The blessing exactly as TFX's Evaluator executor writes it after TFMA: the candidate's
    and baseline's uri and id, the component id, BLESSED or NOT_BLESSED from the written
    validation result."""
    blessing = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.BLESSING_KEY]
    )
    baselines_in = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
    stamp_blessing(
        blessing,
        input_dict[standard_component_specs.MODEL_KEY][0],
        baselines_in[0] if baselines_in else None,
        exec_properties,
        blessed=tfma.load_validation_result(evaluation_uri).validation_ok,
    )


def stamp_blessing(
    blessing: types.Artifact,
    model: types.Artifact,
    baseline: types.Artifact | None,
    exec_properties: dict[str, Any],
    blessed: bool,
) -> None:
    """What TFX's Evaluator records on a blessing: the candidate's (and baseline's) uri and id,
    the component id, and the BLESSED or NOT_BLESSED file with the matching property."""
    c = constants
    blessing.set_string_custom_property(c.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
    blessing.set_int_custom_property(c.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    if baseline is not None:
        blessing.set_string_custom_property(
            c.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline.uri
        )
        blessing.set_int_custom_property(c.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline.id)
    if "current_component_id" in exec_properties:
        blessing.set_string_custom_property("component_id", exec_properties["current_component_id"])
    mark_blessed(blessing, blessed)


def mark_blessed(blessing: types.Artifact, blessed: bool) -> None:
    """The BLESSED or NOT_BLESSED file (the other one removed) and the blessed property."""
    c = constants
    name, other = (
        (c.BLESSED_FILE_NAME, c.NOT_BLESSED_FILE_NAME)
        if blessed
        else (c.NOT_BLESSED_FILE_NAME, c.BLESSED_FILE_NAME)
    )
    if tf.io.gfile.exists(os.path.join(blessing.uri, other)):
        tf.io.gfile.remove(os.path.join(blessing.uri, other))
    io_utils.write_string_file(os.path.join(blessing.uri, name), "")
    blessing.set_int_custom_property(
        c.ARTIFACT_PROPERTY_BLESSED_KEY, c.BLESSED_VALUE if blessed else c.NOT_BLESSED_VALUE
    )


def apply_baseline_comparison(
    input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]]
) -> dict | None:
    """Copy the Trainer's comparison (and feature importance) into the evaluation and withhold
    the blessing when the exported model did not beat the baselines. None: the model has no
    comparison."""
    model_uri = artifact_utils.get_single_uri(input_dict[standard_component_specs.MODEL_KEY])
    comparison = baselines.read_comparison(model_uri)
    if comparison is None:
        return None
    evaluation_uri = artifact_utils.get_single_uri(output_dict[constants.EVALUATION_KEY])
    baselines.write_comparison(evaluation_uri, comparison)
    measured = importance.read_importance(model_uri)
    if measured is not None:
        importance.write_importance(evaluation_uri, measured)
    if standard_component_specs.BLESSING_KEY not in output_dict:
        return comparison
    blessing = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.BLESSING_KEY]
    )
    blessing.set_string_custom_property(BASELINE_DECISION_KEY, comparison["decision"])
    if not comparison["blessable"]:
        mark_blessed(blessing, False)
    return comparison


def write_failed_validation_result(evaluation_uri: str) -> None:
    """A failed TFMA ValidationResult where tfma.load_validation_result looks for it."""
    result = validation_result_pb2.ValidationResult(validation_ok=False)
    tf.io.gfile.makedirs(evaluation_uri)
    with tf.io.TFRecordWriter(os.path.join(evaluation_uri, "validations.tfrecord")) as writer:
        writer.write(result.SerializeToString())
