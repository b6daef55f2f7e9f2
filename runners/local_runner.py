"""Run the pipeline locally: LocalDagRunner, Beam's DirectRunner, ML Metadata in SQLite
(or a shared PostgreSQL/MySQL store given by --metadata).

    python runners/local_runner.py                   # full run, tuning included
    python runners/local_runner.py --skip-tuning     # reuse the committed best hyperparameters
    python runners/local_runner.py --dataset penguins  # another dataset spec (datasets/<name>/)

The pipeline flags are the Kubeflow runner's too (pipeline/flags.py); the ones below are local.
Exit status: 0 when the run completed (whether or not the model was blessed and pushed),
1 when the data gate stopped it on anomalies or drift, 2 on any other failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from cli_support import Exit
from modules.dataset_spec import SpecError
from pipeline import config as config_lib
from pipeline.flags import add_pipeline_flags, apply_pipeline_flags
from pipeline.ingest.sources import SourceError
from pipeline.local import beam_mode
from pipeline.local.run import run_pipeline


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared pipeline flags plus the local run's."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_pipeline_flags(p)
    p.add_argument(
        "--metadata",
        default="",
        help="ML Metadata store: SQLite path, sqlite:///, postgresql:// or mysql:// URL, or a "
        "ConnectionConfig .pbtxt (password from $MLMD_DB_PASSWORD). "
        "Default: <output-dir>/metadata/metadata.db",
    )
    p.add_argument(
        "--always-run",
        action="store_true",
        help="run through TFX even when nothing changed since the last completed run",
    )
    p.add_argument(
        "--beam-mode",
        choices=beam_mode.BEAM_MODES,
        default=beam_mode.AUTO,
        help="in-memory, multi-processing, or auto: chosen from the latest span's size",
    )
    p.add_argument("--multi-processing", action="store_true", help="--beam-mode multi-processing")
    p.add_argument(
        "--cold-beam-workers",
        action="store_true",
        help="multi-processing: start every Beam worker in a fresh interpreter (Beam's default)"
        " instead of forking it from a warm pool",
    )
    p.add_argument("--verbose", action="store_true", help="show TFX/Beam logs")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """The dataset's PipelineConfig with the flags given (paths made absolute)."""
    config = apply_pipeline_flags(
        args, config_lib.dataset_config(args.dataset), path=os.path.abspath
    )
    mode = beam_mode.MULTI_PROCESSING if args.multi_processing else args.beam_mode
    return dataclasses.replace(
        config,
        metadata=args.metadata,
        skip_unchanged=not args.always_run,
        warm_beam_workers=not args.cold_beam_workers,
        beam_args=tuple(beam_mode.pipeline_beam_args(mode, config.data_root, config.beam_args)),
    )


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, return the exit status (see pipeline/local/run.py)."""
    args = parse_args(argv)
    try:
        config = build_config(args)
    except (SourceError, SpecError) as e:
        print(f"Pipeline not started: {e}", file=sys.stderr)
        return Exit.FAILED
    status, _ = run_pipeline(config, verbose=args.verbose)
    return status


if __name__ == "__main__":
    sys.exit(main())
