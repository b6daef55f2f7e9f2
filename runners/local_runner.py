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
import os
import sys

from modules.dataset_spec import SpecError
from pipeline import config as config_lib
from pipeline.run import EXIT_FAILED, run_pipeline


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
        "--skip-tuning",
        action="store_true",
        help="fast mode: import modules/best_hyperparameters instead of searching",
    )
    p.add_argument(
        "--infer-schema", action="store_true", help="SchemaGen instead of the curated schema"
    )
    p.add_argument("--no-cache", action="store_true", help="re-execute every component")
    p.add_argument(
        "--no-drift-check",
        action="store_true",
        help="skip comparing the span with the previous span (schema drift_comparators)",
    )
    p.add_argument(
        "--multi-processing",
        action="store_true",
        help="Beam workers in one process per core (for large data; slower on the sample)",
    )
    p.add_argument("--beam-arg", action="append", default=[], help="extra Beam pipeline arg")
    p.add_argument("--verbose", action="store_true", help="show TFX/Beam logs")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """The PipelineConfig the flags describe (paths made absolute), on the dataset spec's
    settings."""
    beam_args = (
        config_lib.multi_processing_beam_args()
        if args.multi_processing
        else config_lib.in_memory_beam_args()
    )
    named = {}
    if args.pipeline_name:
        named["pipeline_name"] = args.pipeline_name
    if args.data_root:
        named["data_root"] = os.path.abspath(args.data_root)
    return config_lib.dataset_config(
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
        check_drift=not args.no_drift_check,
        beam_args=tuple(beam_args + args.beam_arg),
    )


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, return the exit status (see pipeline/run.py)."""
    args = parse_args(argv)
    try:
        config = build_config(args)
    except SpecError as e:
        print(f"Pipeline not started: {e}", file=sys.stderr)
        return EXIT_FAILED
    status, _ = run_pipeline(config, verbose=args.verbose)
    return status


if __name__ == "__main__":
    sys.exit(main())
