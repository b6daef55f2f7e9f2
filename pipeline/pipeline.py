"""create_pipeline: the one definition of the pipeline, shared by every runner.

CsvExampleGen (latest span) -> RowCleaner (quarantine, with ImportSchemaGen's curated schema)
-> StatisticsGen -> SchemaGen (only with --infer-schema)
-> ExampleValidator + DriftValidator (vs the last span the DataGate accepted) -> DataGate
-> Transform -> Tuner | Importer(best hyperparameters)
-> Trainer -> Resolver(latest blessed model) -> Evaluator -> Pusher (atomic version dir)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from modules import features
from pipeline.config import PipelineConfig
from pipeline.data_gate import ACCEPTED_STATISTICS, DataGate
from pipeline.drift import DRIFT_VALIDATOR, DriftValidator, SpanStatisticsGenExecutor
from pipeline.drift_measures import statistics_options
from pipeline.evaluation import SkipSelfEvaluationExecutor
from pipeline.push import MODEL_CARD_METADATA_KEY, AtomicPusher
from pipeline.quarantine import CLEANED_EXAMPLES, QUARANTINE, ROW_CLEANER
from pipeline.row_cleaner import RowCleaner

# Node ids, used by the runner's report and by tests to find executions in MLMD.
BEST_HYPERPARAMETERS_IMPORTER = "BestHyperparametersImporter"
LATEST_BLESSED_MODEL_RESOLVER = "LatestBlessedModelResolver"


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """AUC, accuracy, calibration and example count, overall and per slice; value
    thresholds plus a change threshold against the baseline (latest blessed) model."""
    t = config.thresholds
    auc_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": t.min_auc}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": t.min_auc_gain},
        ),
    )
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": t.min_accuracy})
    )

    def overall(threshold: tfma.MetricThreshold) -> list[tfma.PerSliceMetricThreshold]:
        # Gate on the whole eval set only: per-hour slices are too small to hold a bar.
        return [
            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
        ]

    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=features.transformed_name(features.LABEL_KEY),
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[key]) for key in config.slice_features],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="AUC", per_slice_thresholds=overall(auc_threshold)
                    ),
                    tfma.MetricConfig(
                        class_name="BinaryAccuracy",
                        per_slice_thresholds=overall(accuracy_threshold),
                    ),
                    tfma.MetricConfig(class_name="Calibration"),
                    tfma.MetricConfig(class_name="MeanLabel"),
                    tfma.MetricConfig(class_name="MeanPrediction"),
                ]
            )
        ],
    )


def user_code_fingerprint(module_file: str) -> str:
    """sha256 over the .py files next to `module_file` (what TFX's user-code wheel hashes)."""
    digest = hashlib.sha256()
    for path in sorted(Path(module_file).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def user_code(config: PipelineConfig, module_file: str, fn_name: str) -> dict:
    """How a component finds its user function: by import path plus a fingerprint of the code
    in its exec properties (so that editing modules/ still invalidates the cache), or by
    module_file, which TFX packages into a wheel and pip-installs for each execution (several
    seconds of fixed cost per component and run)."""
    if not config.user_code_by_import:
        return {"module_file": module_file}
    path = Path(module_file)
    return {fn_name: f"{path.parent.name}.{path.stem}.{fn_name}"}


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config=None,
) -> tfx.dsl.Pipeline:
    """The full pipeline. `metadata_connection_config` is the runner's (None on Kubeflow,
    where the cluster provides ML Metadata)."""
    example_gen = tfx.components.CsvExampleGen(
        input_base=config.data_root,
        input_config=example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern=config.input_pattern)]
        ),
        output_config=example_gen_pb2.Output(
            split_config=example_gen_pb2.SplitConfig(
                splits=[
                    example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=4),
                    example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
                ]
            )
        ),
    )
    # Rows that break the curated schema are quarantined, exact duplicates dropped; everything
    # downstream reads the clean rows. An inferred schema comes after the statistics, so then
    # the cleaner only drops duplicates (pipeline/row_cleaner.py).
    if not config.infer_schema:
        schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)
    row_cleaner = RowCleaner(
        examples=example_gen.outputs["examples"],
        schema=None if config.infer_schema else schema_gen.outputs["schema"],
    ).with_id(ROW_CLEANER)
    examples = row_cleaner.outputs[CLEANED_EXAMPLES]
    # Percentile quantiles: what the drift/skew tests read (pipeline/drift_measures.py).
    statistics_gen = tfx.components.StatisticsGen(
        examples=examples, stats_options=statistics_options()
    )
    # Records the span on the statistics (TFX 1.16 ExampleGen keeps it in a custom property).
    statistics_gen.executor_spec = executor_spec.BeamExecutorSpec(SpanStatisticsGenExecutor)
    if config.infer_schema:
        schema_gen = tfx.components.SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
        )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    validators = [example_validator]
    drift = {}
    if config.check_drift:
        # The statistics every earlier run's DataGate accepted (a plain Channel is not limited to
        # this run; a failed gate publishes nothing, so rejected spans are never in it). The
        # DriftValidator picks the newest one of the highest span below the current span.
        # Empty on the first run: nothing to compare with.
        accepted_statistics = tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ExampleStatistics,
            producer_component_id=DataGate.__name__,
            output_key=ACCEPTED_STATISTICS,
        )
        drift_validator = DriftValidator(
            statistics=statistics_gen.outputs["statistics"],
            schema=schema_gen.outputs["schema"],
            history=accepted_statistics,
        ).with_id(DRIFT_VALIDATOR)
        validators.append(drift_validator)
        drift["drift"] = drift_validator.outputs["drift"]
    data_gate = DataGate(
        anomalies=example_validator.outputs["anomalies"],
        statistics=statistics_gen.outputs["statistics"],
        quarantine=row_cleaner.outputs[QUARANTINE],
        max_quarantine_fraction=config.max_quarantine_fraction,
        **drift,
    )

    fingerprint = (
        {"user_code": user_code_fingerprint(config.trainer_module)}
        if config.user_code_by_import
        else {}
    )
    transform = tfx.components.Transform(
        examples=examples,
        schema=schema_gen.outputs["schema"],
        # StatisticsGen + the validators already check the raw data, and nothing feeds an analyzer
        # cache back in; `lean_transform` skips both (see PipelineConfig for why it is opt-in).
        disable_statistics=config.lean_transform,
        disable_analyzer_cache=config.lean_transform,
        custom_config=fingerprint or None,
        **user_code(config, config.preprocessing_module, "preprocessing_fn"),
    )
    # Nothing is transformed, trained or pushed from data that failed validation.
    transform.add_upstream_node(data_gate)

    if config.skip_tuning:
        hyperparameters_source = tfx.dsl.Importer(
            source_uri=config.best_hyperparameters_dir,
            artifact_type=tfx.types.standard_artifacts.HyperParameters,
        ).with_id(BEST_HYPERPARAMETERS_IMPORTER)
        hyperparameters = hyperparameters_source.outputs["result"]
    else:
        hyperparameters_source = tfx.components.Tuner(
            **user_code(config, config.tuner_module, "tuner_fn"),
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(num_steps=config.tuner_train_steps),
            eval_args=tfx.proto.EvalArgs(num_steps=config.tuner_eval_steps),
            custom_config={"max_trials": config.tuner_trials, **fingerprint},
        )
        hyperparameters = hyperparameters_source.outputs["best_hyperparameters"]

    trainer = tfx.components.Trainer(
        **user_code(config, config.trainer_module, "run_fn"),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        hyperparameters=hyperparameters,
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        custom_config=fingerprint or None,
    )
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(LATEST_BLESSED_MODEL_RESOLVER)
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config),
    )
    # A re-run whose candidate is the blessed baseline itself records "not blessed, nothing
    # changed" instead of evaluating the model against itself.
    evaluator.executor_spec = executor_spec.BeamExecutorSpec(SkipSelfEvaluationExecutor)
    # Copies to a hidden temp dir, then renames: a version appears complete or not at all;
    # with TF Serving warmup requests built from a few eval examples.
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.model_serving_dir)
        ),
        examples=examples,
        # Where the push-time model card reads ML Metadata from (registry/card.py); local runs only.
        custom_config=(
            {MODEL_CARD_METADATA_KEY: config.metadata_connection}
            if metadata_connection_config is not None
            else None
        ),
    )
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[
            example_gen,
            schema_gen,
            row_cleaner,
            statistics_gen,
            *validators,
            data_gate,
            transform,
            hyperparameters_source,
            trainer,
            model_resolver,
            evaluator,
            pusher,
        ],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )
