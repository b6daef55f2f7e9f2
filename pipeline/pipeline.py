"""create_pipeline: the one definition of the pipeline, shared by every runner.

CsvExampleGen (latest span) -> RowCleaner (quarantine, with ImportSchemaGen's curated schema)
-> StatisticsGen -> SchemaGen (only with --infer-schema)
-> ExampleValidator + DriftValidator (vs the last span the DataGate accepted) -> DataGate
-> Transform -> Tuner | Importer(best hyperparameters)
-> Trainer -> Resolver(latest blessed model) -> Evaluator -> Pusher (atomic version dir)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2
from tfx.components import (
    Evaluator,
    ExampleValidator,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
    Tuner,
)
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.base.base_node import BaseNode
from tfx.dsl.components.common.importer import Importer
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import pusher_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

from data_stats import measures as drift_measures
from data_stats.measures import statistics_options
from modules import dataset_spec
from modules.baselines import PUSH_LINEAR_KEY
from modules.dataset_spec import BINARY, MULTICLASS, DatasetSpec, transformed_name
from modules.families import MODEL_FAMILIES_KEY, check_families
from pipeline import source_schema
from pipeline.config import BATCH, PipelineConfig
from pipeline.evaluation import histogram_metrics
from pipeline.evaluation.executor import BatchEvaluationExecutor, SkipSelfEvaluationExecutor
from pipeline.ingest import sources
from pipeline.ingest.training_window import training_window
from pipeline.push.pusher import MODEL_CARD_METADATA_KEY, AtomicPusher
from pipeline.transform_executor import FastIOTransformExecutor
from pipeline.validation.data_gate import ACCEPTED_STATISTICS, DataGate
from pipeline.validation.drift import DRIFT_VALIDATOR, DriftValidator, SpanStatisticsGenExecutor
from pipeline.validation.quarantine import CLEANED_EXAMPLES, QUARANTINE, ROW_CLEANER
from pipeline.validation.row_cleaner import RowCleaner

# Node ids, used by the runner's report and by tests to find executions in MLMD.
BEST_HYPERPARAMETERS_IMPORTER = "BestHyperparametersImporter"
LATEST_BLESSED_MODEL_RESOLVER = "LatestBlessedModelResolver"


def _threshold(
    lower: float | None = None,
    upper: float | None = None,
    gain: float | None = None,
    higher_is_better: bool = True,
) -> list[tfma.PerSliceMetricThreshold]:
    """A value bound and/or a change threshold against the baseline, on the overall slice only:
    per-slice values (an hour, an island) are too small to hold a bar."""
    threshold = tfma.MetricThreshold()
    if lower is not None or upper is not None:
        bounds = {}
        if lower is not None:
            bounds["lower_bound"] = {"value": lower}
        if upper is not None:
            bounds["upper_bound"] = {"value": upper}
        threshold.value_threshold.CopyFrom(tfma.GenericValueThreshold(**bounds))
    if gain is not None:
        threshold.change_threshold.CopyFrom(
            tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER
                if higher_is_better
                else tfma.MetricDirection.LOWER_IS_BETTER,
                absolute={"value": gain},
            )
        )
    if not threshold.ListFields():
        return []
    return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]


def _metric(class_name: str, thresholds=(), module: str = "", **config) -> tfma.MetricConfig:
    metric = tfma.MetricConfig(
        class_name=class_name, module=module, per_slice_thresholds=list(thresholds)
    )
    if config:
        metric.config = json.dumps(config)
    return metric


def eval_thresholds(config: PipelineConfig, spec: DatasetSpec) -> dict[str, float]:
    """The thresholds the Evaluator holds this dataset's candidate to: the spec's `evaluation`,
    or the config's EvalThresholds where set (see EvalThresholds)."""
    t = config.thresholds
    if t is None:
        return dict(spec.thresholds)
    if spec.task == BINARY:
        values = dataclasses.asdict(t)
    elif spec.task == MULTICLASS:
        values = {"min_accuracy": t.min_accuracy, "min_accuracy_gain": t.min_auc_gain}
    else:
        values = dict(spec.thresholds)
    return {k: v for k, v in values.items() if v is not None}


def eval_config(config: PipelineConfig, spec: DatasetSpec | None = None) -> tfma.EvalConfig:
    """The task's metrics, overall and per slice, with value thresholds plus a change threshold
    against the baseline (latest blessed) model:
    binary: AUC, accuracy, calibration, mean label/prediction, example count;
    multiclass: accuracy, per-class precision and recall, the confusion matrix, example count;
    regression: mean squared and absolute error, mean label/prediction, example count."""
    spec = spec or dataset_spec.load(config.dataset)
    t = eval_thresholds(config, spec)
    specs = []
    if spec.task == BINARY:
        metrics = [
            _metric("ExampleCount"),
            _metric("AUC", _threshold(t.get("min_auc"), gain=t.get("min_auc_gain"))),
            _metric("BinaryAccuracy", _threshold(t.get("min_accuracy"))),
            # TFMA's Calibration, MeanLabel and MeanPrediction, derived from the histogram AUC
            # already builds instead of a per-example combiner of their own (same names and
            # values; pipeline/evaluation/histogram_metrics.py, docs/performance.md).
            _metric("HistogramCalibration", module=histogram_metrics.MODULE),
            _metric("HistogramMeanLabel", module=histogram_metrics.MODULE),
            _metric("HistogramMeanPrediction", module=histogram_metrics.MODULE),
        ]
    elif spec.task == MULTICLASS:
        metrics = [
            _metric("ExampleCount"),
            _metric(
                "SparseCategoricalAccuracy",
                _threshold(t.get("min_accuracy"), gain=t.get("min_accuracy_gain")),
            ),
            _metric("MultiClassConfusionMatrixPlot"),
        ]
        # Precision and recall of each class, one-vs-rest (sub keys class_id:<id>).
        specs.append(
            tfma.MetricsSpec(
                metrics=[_metric("Precision"), _metric("Recall")],
                binarize=tfma.BinarizationOptions(
                    class_ids={"values": list(range(spec.num_classes))}
                ),
            )
        )
    else:
        metrics = [
            _metric("ExampleCount"),
            _metric(
                "MeanSquaredError",
                _threshold(
                    upper=t.get("max_mse"), gain=t.get("max_mse_increase"), higher_is_better=False
                ),
            ),
            _metric("MeanAbsoluteError", _threshold(upper=t.get("max_mae"))),
            _metric("MeanLabel"),
            _metric("MeanPrediction"),
        ]
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=transformed_name(spec.label),
                preprocessing_function_names=["transform_features"],
                # Said, not detected: TFMA then loads each model once (docs/design.md).
                model_type=tfma.TF_KERAS,
            )
        ],
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[key]) for key in config.slice_features],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics), *specs],
        # No compiled Keras metrics on top: the specs above are what the gate reads
        # (docs/design.md, "The Evaluator's configuration").
        options=tfma.Options(include_default_metrics=wrappers_pb2.BoolValue(value=False)),
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


@dataclasses.dataclass(frozen=True)
class _Ingest:
    """The data stages' nodes and what the later stages read from them."""

    example_gen: BaseNode
    schema_gen: BaseNode
    row_cleaner: RowCleaner
    statistics_gen: BaseNode

    @property
    def examples(self) -> Channel:
        return self.row_cleaner.outputs[CLEANED_EXAMPLES]

    @property
    def schema(self) -> Channel:
        return self.schema_gen.outputs["schema"]

    @property
    def statistics(self) -> Channel:
        return self.statistics_gen.outputs["statistics"]


def _ingest(config: PipelineConfig) -> _Ingest:
    """ExampleGen -> RowCleaner -> StatisticsGen, with the curated (or inferred) schema."""
    # CsvExampleGen over data_root unless config.sources lists others (pipeline/ingest/sources.py).
    example_gen = sources.example_gen(config)
    # Rows that break the curated schema are quarantined, exact duplicates dropped; everything
    # downstream reads the clean rows. An inferred schema comes after the statistics, so then
    # the cleaner only drops duplicates (pipeline/validation/row_cleaner.py).
    if not config.infer_schema:
        schema_file = config.schema_path
        if len(config.sources) > 1:  # the ExampleGen adds `source`: declared on this path alone
            schema_file = source_schema.with_source_feature(
                schema_file, os.path.join(config.pipeline_root, "ImportedSchemas")
            )
        schema_gen = ImportSchemaGen(schema_file=schema_file)
    row_cleaner = RowCleaner(
        examples=example_gen.outputs["examples"],
        schema=None if config.infer_schema else schema_gen.outputs["schema"],
    ).with_id(ROW_CLEANER)
    # Percentile quantiles: what the drift/skew tests read (data_stats/measures.py).
    statistics_gen = StatisticsGen(
        examples=row_cleaner.outputs[CLEANED_EXAMPLES], stats_options=statistics_options()
    )
    # Records the span on the statistics (TFX 1.16 ExampleGen keeps it in a custom property).
    statistics_gen.executor_spec = executor_spec.BeamExecutorSpec(SpanStatisticsGenExecutor)
    if config.infer_schema:
        schema_gen = SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
        )
    return _Ingest(example_gen, schema_gen, row_cleaner, statistics_gen)


def _validation(config: PipelineConfig, spec: DatasetSpec, data: _Ingest) -> tuple[list, DataGate]:
    """ExampleValidator (+ DriftValidator) -> DataGate: the validators and the gate."""
    example_validator = ExampleValidator(statistics=data.statistics, schema=data.schema)
    validators = [example_validator]
    drift = {}
    if config.check_drift:
        # The statistics every earlier run's DataGate accepted (a plain Channel is not limited to
        # this run; a failed gate publishes nothing, so rejected spans are never in it). The
        # DriftValidator picks the newest one of the highest span below the current span.
        # Empty on the first run: nothing to compare with.
        accepted_statistics = Channel(
            type=standard_artifacts.ExampleStatistics,
            producer_component_id=DataGate.__name__,
            output_key=ACCEPTED_STATISTICS,
        )
        drift_validator = DriftValidator(
            statistics=data.statistics,
            schema=data.schema,
            history=accepted_statistics,
            feature_tests=drift_measures.tests_config(spec),
        ).with_id(DRIFT_VALIDATOR)
        validators.append(drift_validator)
        drift["drift"] = drift_validator.outputs["drift"]
    data_gate = DataGate(
        anomalies=example_validator.outputs["anomalies"],
        statistics=data.statistics,
        quarantine=data.row_cleaner.outputs[QUARANTINE],
        max_quarantine_fraction=config.max_quarantine_fraction,
        **drift,
    )
    return validators, data_gate


def _training_window(config: PipelineConfig, examples, data_gate: DataGate) -> tuple[list, object]:
    """The examples Transform (and so the Tuner and Trainer) learn from: the newest span, or
    with train_spans > 1 a Resolver's window of the last accepted spans, resolved after the
    gate. Returns (the window's nodes, the examples channel)."""
    if config.train_spans < 1:
        raise ValueError(f"train_spans must be >= 1, got {config.train_spans}")
    if config.train_spans == 1:
        return [], examples
    window = training_window(examples, config.train_spans)
    window.add_upstream_node(data_gate)
    return [window], window.outputs["examples"]


def user_code_config(config: PipelineConfig, spec: DatasetSpec) -> dict:
    """What Transform, Tuner and Trainer carry in custom_config so their cache sees a change:
    the dataset spec (as data) and, with user code by import, a fingerprint of the code."""
    fingerprint = (
        {"user_code": user_code_fingerprint(config.trainer_module)}
        if config.user_code_by_import
        else {}
    )
    return {dataset_spec.CONFIG_KEY: spec.to_config(), **fingerprint}


def transform_component(
    config: PipelineConfig, examples: Channel, schema: Channel, fingerprint: dict
) -> Transform:
    """The pipeline's Transform node (also what bench/transform_bench.py and the Transform
    executor's tests run): TFX's component with this project's executor, which reads and writes
    records faster and computes the same (pipeline/transform_executor.py)."""
    transform = Transform(
        examples=examples,
        schema=schema,
        # StatisticsGen + the validators already check the raw data, and nothing feeds an analyzer
        # cache back in; `lean_transform` (the default) skips both (PipelineConfig).
        disable_statistics=config.lean_transform,
        disable_analyzer_cache=config.lean_transform,
        custom_config=fingerprint,
        **user_code(config, config.preprocessing_module, "preprocessing_fn"),
    )
    transform.executor_spec = executor_spec.BeamExecutorSpec(FastIOTransformExecutor)
    return transform


def _transform(config: PipelineConfig, data: _Ingest, examples, fingerprint: dict, gate):
    transform = transform_component(config, examples, data.schema, fingerprint)
    # Nothing is transformed, trained or pushed from data that failed validation.
    transform.add_upstream_node(gate)
    return transform


def _families(config: PipelineConfig) -> dict:
    """Only a run that names model families carries them: the default run's exec properties (and
    so its cache) stay as they were."""
    if not config.model_families:
        return {}
    return {MODEL_FAMILIES_KEY: list(check_families(config.model_families))}


def _hyperparameters(config: PipelineConfig, data: _Ingest, transform, fingerprint: dict):
    """The Tuner, or with skip_tuning an Importer of the committed best hyperparameters.
    Returns (the node, its hyperparameters channel)."""
    if config.skip_tuning:
        importer = Importer(
            source_uri=config.best_hyperparameters_dir,
            artifact_type=standard_artifacts.HyperParameters,
        ).with_id(BEST_HYPERPARAMETERS_IMPORTER)
        return importer, importer.outputs["result"]
    tuner = Tuner(
        **user_code(config, config.tuner_module, "tuner_fn"),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=data.schema,
        train_args=trainer_pb2.TrainArgs(num_steps=config.tuner_train_steps),
        eval_args=trainer_pb2.EvalArgs(num_steps=config.tuner_eval_steps),
        custom_config={"max_trials": config.tuner_trials, **_families(config), **fingerprint},
    )
    return tuner, tuner.outputs["best_hyperparameters"]


def _trainer(config: PipelineConfig, data: _Ingest, transform, hyperparameters, fingerprint: dict):
    return Trainer(
        **user_code(config, config.trainer_module, "run_fn"),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=data.schema,
        hyperparameters=hyperparameters,
        train_args=trainer_pb2.TrainArgs(num_steps=config.train_steps),
        eval_args=trainer_pb2.EvalArgs(num_steps=config.eval_steps),
        custom_config={
            PUSH_LINEAR_KEY: config.push_linear_when_better,
            **_families(config),
            **fingerprint,
        },
    )


def _evaluate_and_push(
    config: PipelineConfig, spec: DatasetSpec, examples, trainer, local: bool
) -> list:
    """Resolver(latest blessed model) -> Evaluator -> Pusher."""
    model_resolver = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id(LATEST_BLESSED_MODEL_RESOLVER)
    evaluator = Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config, spec),
    )
    # A re-run whose candidate is the blessed baseline itself records "not blessed, nothing
    # changed" instead of evaluating the model against itself.
    # `--evaluator batch` (the default): the same executor, evaluating in numpy batches when
    # the eval config allows it (pipeline/evaluation/batch.py); `tfma`: TFX's executor only.
    evaluator.executor_spec = executor_spec.BeamExecutorSpec(
        BatchEvaluationExecutor if config.evaluator == BATCH else SkipSelfEvaluationExecutor
    )
    # Copies to a hidden temp dir, then renames: a version appears complete or not at all;
    # with TF Serving warmup requests built from a few eval examples.
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=config.model_serving_dir
            )
        ),
        examples=examples,
        # Where the push-time model card reads ML Metadata from (model_card/); local runs only.
        custom_config={MODEL_CARD_METADATA_KEY: config.metadata_connection} if local else None,
    )
    return [model_resolver, evaluator, pusher]


def create_pipeline(
    config: PipelineConfig,
    metadata_connection_config=None,
) -> Pipeline:
    """The full pipeline, one builder per stage. `metadata_connection_config` is the runner's
    (None on Kubeflow, where the cluster provides ML Metadata)."""
    spec = dataset_spec.load(config.dataset)
    data = _ingest(config)
    validators, data_gate = _validation(config, spec, data)
    window, training_examples = _training_window(config, data.examples, data_gate)
    fingerprint = user_code_config(config, spec)
    transform = _transform(config, data, training_examples, fingerprint, data_gate)
    hyperparameters_source, hyperparameters = _hyperparameters(config, data, transform, fingerprint)
    trainer = _trainer(config, data, transform, hyperparameters, fingerprint)
    local = metadata_connection_config is not None
    return Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[
            data.example_gen,
            data.schema_gen,
            data.row_cleaner,
            data.statistics_gen,
            *validators,
            data_gate,
            *window,
            transform,
            hyperparameters_source,
            trainer,
            *_evaluate_and_push(config, spec, data.examples, trainer, local),
        ],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )
