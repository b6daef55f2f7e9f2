"""The pipeline flags both runners take, in one table, mapped onto PipelineConfig in one place.

A flag left out keeps the value of the config it is applied to (the dataset spec's for the
local runner, the cluster defaults for Kubeflow), so a runner never restates a default.
Runner-only flags (the local Beam mode, the Kubeflow image and cluster) stay in the runners.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from typing import Any

from modules.dataset_spec import DEFAULT_DATASET
from modules.families import ALL_FAMILIES, check_families
from pipeline.config import EVALUATORS, EvalThresholds, PipelineConfig, span_count
from pipeline.ingest.sources import check_combination, parse_source_flag


def finite_float(text: str) -> float:
    """A threshold flag's value: a finite number (argparse type; its message is the error)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number")
    return value


def model_family_flag(text: str) -> str:
    """A `--model-family` value: one of modules.families.ALL_FAMILIES (argparse type; its
    message names them)."""
    try:
        return check_families([text])[0]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def evaluator_flag(text: str) -> str:
    """An `--evaluator` value: batch or tfma (argparse type; its message names them)."""
    if text not in EVALUATORS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected one of {', '.join(EVALUATORS)}")
    return text


@dataclasses.dataclass(frozen=True)
class Flag:
    """One pipeline flag: its option strings, the PipelineConfig field it sets, and how."""

    options: tuple[str, ...]
    field: str
    help: str
    type: Callable[[str], Any] | None = None
    # A switch sets `field` to this value; None: the flag takes a value.
    switch: bool | None = None
    repeat: bool = False
    # Applied when the config is built, so that its error is the runner's one line, not usage.
    convert: Callable[[str], Any] | None = None
    path: bool = False
    threshold: bool = False

    @property
    def dest(self) -> str:
        return self.options[0].lstrip("-").replace("-", "_")


FLAGS: tuple[Flag, ...] = (
    Flag(("--pipeline-name",), "pipeline_name", "default: the dataset's <name>_pipeline"),
    Flag(
        ("--data-root",), "data_root", "holds span-N/*.csv; default: the dataset spec's", path=True
    ),
    Flag(("--output-dir", "--pipeline-root"), "output_dir", "pipeline artifacts", path=True),
    Flag(("--schema-path",), "schema_path", "curated schema.pbtxt; default: the spec's", path=True),
    Flag(
        ("--serving-model-dir",),
        "serving_model_dir",
        "Pusher destination = TF Serving's model base path; default serving_model/<model>",
        path=True,
    ),
    Flag(("--train-steps",), "train_steps", "Trainer steps", type=int),
    Flag(("--eval-steps",), "eval_steps", "Trainer eval steps", type=int),
    Flag(("--tuner-trials",), "tuner_trials", "Tuner trials", type=int),
    Flag(("--tuner-train-steps",), "tuner_train_steps", "steps per trial", type=int),
    Flag(("--tuner-eval-steps",), "tuner_eval_steps", "eval steps per trial", type=int),
    Flag(
        ("--min-auc",), "min_auc", "Evaluator: bless at AUC >= this", finite_float, threshold=True
    ),
    Flag(
        ("--min-accuracy",),
        "min_accuracy",
        "bless at accuracy >= this",
        finite_float,
        threshold=True,
    ),
    Flag(
        ("--min-auc-gain",),
        "min_auc_gain",
        "AUC gain over the latest blessed model needed to bless",
        finite_float,
        threshold=True,
    ),
    Flag(
        ("--train-spans",),
        "train_spans",
        "train on the newest span and the N-1 highest earlier accepted spans",
        span_count,
    ),
    Flag(
        ("--skip-tuning",),
        "skip_tuning",
        "fast mode: import modules/best_hyperparameters instead of searching",
        switch=True,
    ),
    Flag(
        ("--model-family",),
        "model_families",
        "model family to search and train, repeatable: " + ", ".join(ALL_FAMILIES),
        model_family_flag,
        repeat=True,
    ),
    Flag(
        ("--infer-schema",), "infer_schema", "SchemaGen instead of the curated schema", switch=True
    ),
    Flag(("--no-cache",), "enable_cache", "re-execute every component", switch=False),
    Flag(
        ("--transform-statistics",),
        "lean_transform",
        "Transform also writes pre/post-transform statistics and an analyzer cache",
        switch=False,
    ),
    Flag(
        ("--no-drift-check",),
        "check_drift",
        "skip comparing the span with the previous span (schema drift_comparators)",
        switch=False,
    ),
    Flag(
        ("--source",),
        "sources",
        "KIND:LOCATION to read instead of --data-root, repeatable (docs/sources.md)",
        repeat=True,
        convert=parse_source_flag,
    ),
    Flag(("--beam-arg",), "beam_args", "Beam pipeline arg, repeatable", repeat=True),
    Flag(
        ("--evaluator",),
        "evaluator",
        "Evaluator: batch (numpy batches; TFMA for configs it does not reproduce) or tfma",
        evaluator_flag,
    ),
)


def add_pipeline_flags(parser: argparse.ArgumentParser) -> None:
    """Declare `--dataset` and FLAGS on `parser`; flags not given stay out of the namespace."""
    parser.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        help="dataset spec: a name under datasets/ or a dataset.yaml path (docs/datasets.md)",
    )
    for flag in FLAGS:
        kwargs: dict[str, Any] = {"dest": flag.dest, "default": argparse.SUPPRESS}
        if flag.switch is not None:
            kwargs["action"] = "store_true"
        elif flag.repeat:
            kwargs.update(action="append", type=flag.type)
        else:
            kwargs["type"] = flag.type
        parser.add_argument(*flag.options, help=flag.help, **kwargs)


def apply_pipeline_flags(
    args: argparse.Namespace,
    config: PipelineConfig,
    path: Callable[[str], str] = str,
) -> PipelineConfig:
    """`config` with the FLAGS given in `args`; `path` turns path values into the runner's kind
    (absolute on this machine for the local runner, as given for bucket URIs)."""
    given = vars(args)
    changes: dict[str, Any] = {}
    thresholds: dict[str, float] = {}
    for flag in (f for f in FLAGS if f.dest in given):
        value = given[flag.dest]
        if flag.threshold:
            thresholds[flag.field] = value
        elif flag.switch is not None:
            changes[flag.field] = flag.switch
        elif flag.repeat:
            changes[flag.field] = tuple(map(flag.convert or str, value))
        else:
            changes[flag.field] = path(value) if flag.path else value
    if "sources" in changes:
        check_combination(changes["sources"])
    if thresholds:
        base = config.thresholds or EvalThresholds()
        changes["thresholds"] = dataclasses.replace(base, **thresholds)
    return dataclasses.replace(config, **changes)
