"""Run the pipeline locally: LocalDagRunner, Beam's DirectRunner, ML Metadata in SQLite
(or a shared PostgreSQL/MySQL store given by --metadata).

    python runners/local_runner.py                   # full run, tuning included
    python runners/local_runner.py --skip-tuning     # reuse the committed best hyperparameters
    python runners/local_runner.py --dataset penguins  # another dataset spec (datasets/<name>/)

Exit status: 0 when the run completed (whether or not the model was blessed and pushed),
1 when the data gate stopped it on anomalies or drift, 2 on any other failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from modules.dataset_spec import SpecError
from pipeline import config as config_lib
from pipeline.ingest.sources import SourceError, check_combination, parse_source_flag
from pipeline.local import beam_mode
from pipeline.local.run import EXIT_FAILED, run_pipeline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The runner's flags; defaults come from PipelineConfig."""
    defaults = config_lib.PipelineConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--dataset",
        default=defaults.dataset,
        help="dataset spec: a name under datasets/ or a dataset.yaml path (docs/datasets.md)",
    )
    p.add_argument("--pipeline-name", default=None, help="default: <dataset>_pipeline")
    p.add_argument(
        "--data-root", default=None, help="holds span-N/*.csv; default: the dataset spec's"
    )
    p.add_argument("--output-dir", default=defaults.output_dir, help="pipeline artifacts")
    p.add_argument(
        "--metadata",
        default="",
        help="ML Metadata store: SQLite path, sqlite:///, postgresql:// or mysql:// URL, or a "
        "ConnectionConfig .pbtxt (password from $MLMD_DB_PASSWORD). "
        "Default: <output-dir>/metadata/metadata.db",
    )
    p.add_argument("--serving-model-dir", default="", help="default: serving_model/<model>")
    p.add_argument("--train-steps", type=int, default=defaults.train_steps)
    p.add_argument("--eval-steps", type=int, default=defaults.eval_steps)
    p.add_argument("--tuner-trials", type=int, default=defaults.tuner_trials)
    p.add_argument("--tuner-train-steps", type=int, default=defaults.tuner_train_steps)
    p.add_argument(
        "--min-auc", type=float, help="Evaluator: bless at AUC >= this (default: the spec's)"
    )
    p.add_argument("--min-accuracy", type=float, help="default: the dataset spec's")
    p.add_argument(
        "--skip-tuning",
        action="store_true",
        help="fast mode: import modules/best_hyperparameters instead of searching",
    )
    p.add_argument(
        "--infer-schema", action="store_true", help="SchemaGen instead of the curated schema"
    )
    p.add_argument("--no-cache", action="store_true", help="re-execute every component")
    p.add_argument(
        "--always-run",
        action="store_true",
        help="run through TFX even when nothing changed since the last completed run (its "
        "cache still skips unchanged components); by default such a re-run stops at once",
    )
    p.add_argument(
        "--transform-statistics",
        action="store_true",
        help="Transform also writes pre/post-transform statistics and an analyzer cache",
    )
    p.add_argument(
        "--no-drift-check",
        action="store_true",
        help="skip comparing the span with the previous span (schema drift_comparators)",
    )
    p.add_argument(
        "--beam-mode",
        choices=beam_mode.BEAM_MODES,
        default=beam_mode.AUTO,
        help="Beam DirectRunner: in-memory (one process), multi-processing (one worker per "
        "core), or auto: chosen from the latest span's size (default). --beam-arg still wins",
    )
    p.add_argument(
        "--multi-processing",
        action="store_true",
        help="same as --beam-mode multi-processing",
    )
    p.add_argument(
        "--train-spans",
        type=config_lib.span_count,
        default=defaults.train_spans,
        metavar="N",
        help="train on the newest span and the N-1 highest earlier spans the data gate accepted "
        "(default 1: the newest span alone)",
    )
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="KIND:LOCATION",
        help="read these instead of --data-root, repeatable (docs/sources.md): csv:/dir, "
        "parquet:/dir, tfrecord:/dir (span-N/ folders under dir), "
        "postgresql://user@host:5432/db?table=NAME[&span_column=C&partitions=K] (password "
        "from PGPASSWORD/PGPASSFILE); several: one run over all, each row's source recorded",
    )
    p.add_argument("--beam-arg", action="append", default=[], help="extra Beam pipeline arg")
    p.add_argument("--verbose", action="store_true", help="show TFX/Beam logs")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """The PipelineConfig the flags describe (paths made absolute), on the dataset spec's
    settings."""
    specs = tuple(parse_source_flag(text) for text in args.source)
    check_combination(specs)
    mode = beam_mode.MULTI_PROCESSING if args.multi_processing else args.beam_mode
    named = {}
    if args.pipeline_name:
        named["pipeline_name"] = args.pipeline_name
    if args.data_root:
        named["data_root"] = os.path.abspath(args.data_root)
    if args.min_auc is not None or args.min_accuracy is not None:
        given = {"min_auc": args.min_auc, "min_accuracy": args.min_accuracy}
        named["thresholds"] = dataclasses.replace(
            config_lib.EvalThresholds(), **{k: v for k, v in given.items() if v is not None}
        )
    config = config_lib.dataset_config(
        args.dataset,
        **named,
        output_dir=os.path.abspath(args.output_dir),
        metadata=args.metadata,
        serving_model_dir=os.path.abspath(args.serving_model_dir) if args.serving_model_dir else "",
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        tuner_trials=args.tuner_trials,
        tuner_train_steps=args.tuner_train_steps,
        skip_tuning=args.skip_tuning,
        infer_schema=args.infer_schema,
        enable_cache=not args.no_cache,
        skip_unchanged=not args.always_run,
        lean_transform=not args.transform_statistics,
        check_drift=not args.no_drift_check,
        train_spans=args.train_spans,
        # --source replaces the dataset spec's sources; without it the spec's (or its CSV) hold.
        **({"sources": specs} if specs else {}),
    )
    return dataclasses.replace(
        config,
        beam_args=tuple(beam_mode.pipeline_beam_args(mode, config.data_root, args.beam_arg)),
    )


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, return the exit status (see pipeline/local/run.py)."""
    args = parse_args(argv)
    try:
        config = build_config(args)
    except (SourceError, SpecError) as e:
        print(f"Pipeline not started: {e}", file=sys.stderr)
        return EXIT_FAILED
    status, _ = run_pipeline(config, verbose=args.verbose)
    return status


if __name__ == "__main__":
    sys.exit(main())
