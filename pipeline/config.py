"""One typed configuration for every runner (local, Kubeflow, tests).

Runners only fill this in from their flags; `create_pipeline` is the only reader. Defaults are
the production settings measured on the 15,002-row taxi sample (see README).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import model_layout
from metadata.connection import LOCAL_OUTPUT_DIR, sqlite_store_path
from metadata.locations import DatasetLocations, locations, of_spec
from modules import dataset_spec, features
from pipeline.ingest.sources import SourceSpec, load_sources

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODULES_DIR = PROJECT_ROOT / "modules"


def run_source_dirs(root: Path = PROJECT_ROOT) -> list[Path]:
    """What a run reads from a checkout besides its data: the project's Python packages (not
    tests/), the dataset specs and the curated schema. The up-to-date check fingerprints them;
    the pipeline benchmark runs from a copy of them."""
    packages = [p for p in sorted(root.iterdir()) if (p / "__init__.py").is_file()]
    return [p for p in packages if p.name != "tests"] + [root / "datasets", root / "schema"]


# The default dataset's spec: the defaults below (thresholds, paths, slices) are its settings.
_DEFAULT_SPEC = dataset_spec.load(dataset_spec.DEFAULT_DATASET)
_DEFAULT = locations(dataset_spec.DEFAULT_DATASET)


# The Evaluator's implementations (PipelineConfig.evaluator, `--evaluator`): named here, not
# beside the executors, so that reading flags does not import TFMA (the up-to-date re-run
# answers before TensorFlow loads).
BATCH = "batch"
TFMA = "tfma"
EVALUATORS = (BATCH, TFMA)


@dataclasses.dataclass(frozen=True)
class EvalThresholds:
    """When the Evaluator blesses a binary classifier (defaults: the default dataset spec's
    `evaluation`). Set on a PipelineConfig it overrides the spec's thresholds; a multiclass
    dataset takes `min_accuracy` and `min_auc_gain` (as the accuracy gain) from it, a regression
    dataset keeps its spec's thresholds (see pipeline.pipeline.eval_config).

    Value thresholds must hold on their own; the change threshold compares with the latest
    blessed (baseline) model on the same eval data: the candidate's AUC must beat it by at least
    `min_auc_gain`. The small positive default pushes only a better model, so a re-run that
    re-trains the served model on unchanged data never pushes a duplicate version; a negative
    value tolerates that much regression.
    """

    min_auc: float | None = _DEFAULT_SPEC.thresholds["min_auc"]
    min_accuracy: float | None = _DEFAULT_SPEC.thresholds["min_accuracy"]
    # None: no comparison with the baseline (every blessed candidate is pushed).
    min_auc_gain: float | None = _DEFAULT_SPEC.thresholds["min_auc_gain"]


_THRESHOLD_FIELDS = dataclasses.fields(EvalThresholds)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    # The dataset spec (a name under datasets/, or a dataset.yaml path): labels, features, task.
    # dataset_config() fills the settings below from it; these defaults are the default dataset's.
    dataset: str = dataset_spec.DEFAULT_DATASET
    pipeline_name: str = _DEFAULT.pipeline_name
    model_name: str = _DEFAULT.model_name
    data_root: str = _DEFAULT.data_root
    # Span-aware input layout: data/taxi/span-1/data.csv, span-2/..., the latest span is used.
    input_pattern: str = _DEFAULT.input_pattern
    # Compare the new span's statistics with the previous span's under the schema's
    # drift_comparators (DriftValidator); the data gate stops the run on drift.
    check_drift: bool = True
    output_dir: str = str(LOCAL_OUTPUT_DIR)
    # SQLite path, sqlite:/// / postgresql:// / mysql:// URL, or a ConnectionConfig .pbtxt file.
    metadata: str = ""
    serving_model_dir: str = ""
    schema_path: str = _DEFAULT.schema_path
    infer_schema: bool = False
    train_steps: int = 2000
    eval_steps: int = 100
    tuner_trials: int = 4
    tuner_train_steps: int = 300
    tuner_eval_steps: int = 50
    skip_tuning: bool = False
    # The model families the Tuner searches and the Trainer may train (modules/model.py
    # ALL_FAMILIES, e.g. ("gradient_boosted_trees",)); empty: the default search's
    # (modules.model.FAMILIES). With skip_tuning, the committed hyperparameters' family when it
    # is one of them, else the first.
    model_families: tuple[str, ...] = ()
    best_hyperparameters_dir: str = str(MODULES_DIR / "best_hyperparameters")
    # When the linear baseline the Trainer fits beside the candidate beats it (by the dataset
    # spec's evaluation.linear_margin, default the eval noise: modules/baselines.py), export and
    # push the linear model instead; False: push nothing (the candidate is not blessed).
    push_linear_when_better: bool = True
    # None: the dataset spec's `evaluation` thresholds.
    thresholds: EvalThresholds | None = dataclasses.field(default_factory=EvalThresholds)
    slice_features: tuple[str, ...] = tuple(features.SLICE_FEATURE_KEYS)
    beam_args: tuple[str, ...] = ()
    # Beam's multi-processing DirectRunner workers are forked from a pool that imported Beam,
    # TensorFlow and TFX once per run (pipeline/local/warm_workers.py); False
    # (`--cold-beam-workers`): each worker starts a fresh interpreter, as Beam does.
    warm_beam_workers: bool = True
    enable_cache: bool = True
    preprocessing_module: str = str(MODULES_DIR / "preprocessing.py")
    trainer_module: str = str(MODULES_DIR / "trainer.py")
    tuner_module: str = str(MODULES_DIR / "tuner.py")
    # True: components import the user functions (modules.trainer.run_fn, ...) and carry a
    # fingerprint of modules/ for the cache; False: TFX packages each module_file into a wheel.
    user_code_by_import: bool = True
    # True: Transform computes no pre/post-transform statistics and writes no analyzer cache;
    # nothing here reads them (docs/design.md, "A lean Transform"). `--transform-statistics`.
    lean_transform: bool = True
    # Train on the newest span plus the highest earlier spans the data gate accepted, this many
    # spans in all (pipeline/ingest/training_window.py); 1: the newest span alone, the pipeline
    # unchanged.
    train_spans: int = 1
    # Where the rows come from (pipeline/ingest/sources.py, docs/sources.md): empty = CsvExampleGen
    # over data_root/input_pattern, exactly as without this field.
    sources: tuple[SourceSpec, ...] = ()
    # The largest share of the span's rows the RowCleaner may quarantine (rows that break the
    # curated schema) for the run to go on with the clean rows; above it the DataGate stops it.
    max_quarantine_fraction: float = 0.01
    # A local run whose data, code, configuration, ML Metadata and served versions are as the
    # last completed run left them stops before TFX loads, saying so (pipeline/local/up_to_date.py);
    # False (`--always-run`): TFX runs it, and its cache skips the unchanged components.
    skip_unchanged: bool = True
    # The Evaluator's implementation (`--evaluator`): "batch" evaluates in numpy batches when
    # every metric and slice of the eval config is one it reproduces, else through TFMA
    # (pipeline/evaluation/batch.py); "tfma": TFX's executor, TFMA over Beam, always.
    evaluator: str = BATCH

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, self.pipeline_name)

    @property
    def metadata_connection(self) -> str:
        """Defaults to a SQLite file next to the pipeline outputs."""
        return self.metadata or sqlite_store_path(self.output_dir)

    @property
    def model_serving_dir(self) -> str:
        """TF Serving's model base path: the Pusher writes <this>/<version>/."""
        return self.serving_model_dir or str(model_layout.SERVING_ROOT / self.model_name)


# `--beam-mode auto` (pipeline/local/beam_mode.py) runs Beam multi-processing from this many bytes
# of CSV in the latest span on, in-memory below (the crossover: docs/performance.md).
MULTI_PROCESSING_FROM_BYTES = 8 * 2**20


def dataset_config(dataset: str | os.PathLike, **overrides) -> PipelineConfig:
    """The PipelineConfig of a dataset spec: its pipeline and model name (`<name>_pipeline`,
    `<name>`), data root and span pattern, schema, slices and thresholds; `overrides` win.
    A SpecError says why a spec cannot be used."""
    spec = dataset_spec.load(dataset)
    where: DatasetLocations = of_spec(spec)
    in_repo = Path(spec.spec_path) == dataset_spec.spec_path(spec.name)
    settings = dict(
        dataset=spec.name if in_repo else spec.spec_path,
        pipeline_name=where.pipeline_name,
        model_name=where.model_name,
        data_root=where.data_root,
        input_pattern=where.input_pattern,
        schema_path=where.schema_path,
        slice_features=tuple(spec.slices),
        thresholds=(
            EvalThresholds(**{f.name: spec.thresholds.get(f.name) for f in _THRESHOLD_FIELDS})
            if spec.task == dataset_spec.BINARY
            else None
        ),
        # Keys the spec passes through to their owners: the sources (pipeline/ingest/sources.py) and
        # the row cleaner's threshold (pipeline/validation/row_cleaner.py).
        sources=load_sources(spec.extra.get("sources")),
    )
    if "max_quarantine_fraction" in spec.extra:
        settings["max_quarantine_fraction"] = _fraction(
            spec.extra["max_quarantine_fraction"], spec.spec_path
        )
    settings.update(overrides)
    return PipelineConfig(**settings)


def _fraction(value: object, where: str) -> float:
    """A share in [0, 1] from a spec, or a one-line SpecError naming the file."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise dataset_spec.SpecError(
            f"{where}: max_quarantine_fraction must be a number from 0 to 1, got {value!r}"
        )
    return float(value)


def in_memory_beam_args() -> list[str]:
    """Beam's DirectRunner in one process: fastest at the taxi sample's size (see README)."""
    return ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def multi_processing_beam_args(workers: int = 0) -> list[str]:
    """Beam workers in separate processes (0 = one per core): pays off on large data only."""
    return ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


def span_count(text: str) -> int:
    """A `--train-spans` value: a whole number >= 1 (argparse type; its message is the error)."""

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of spans >= 1")
    return value
