"""Disk usage before and after `mlops gc` on a multi-run history, and the gc's run time.

    .venv/bin/python bench/gc_bench.py [--runs 10] [--keep-last 2] [--rows 400] [--keep DIR]

Runs the pipeline `--runs` times over changing spans of the taxi sample (span k: every k-th row
of span 1 from offset k, `--rows` rows, `--skip-tuning`; the smoke-sized settings of the test
suite, pipeline/testing/samples.py), each candidate blessed and pushed only when it beats the
served model, as in production. Then it times the dry-run plan and `gc --apply --keep-last N
--keep-days 0`, and prints the pipeline root's bytes, the store's bytes and the artifact counts
before and after (docs/upkeep.md, "Figures").
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

import modules  # noqa: F401 - the Keras-2 switch before TensorFlow loads
from cli_support import Exit
from metadata.store import open_store
from modules.dataset_spec import Retention
from pipeline.ingest import spans
from pipeline.local.run import run_pipeline
from pipeline.testing.samples import TAXI_CSV, small_config, write_sample
from upkeep import gc


def _span_csv(path: Path, rows: int, start: int) -> Path:
    with open(TAXI_CSV, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        all_rows = list(reader)
    step = max(1, len(all_rows) // rows)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(all_rows[start::step][:rows])
    return path


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keep-last", type=int, default=2)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--keep", default=None, help="Work here and keep it (default: a temp dir).")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.keep_last < 1 or args.rows < 50:
        parser.error("--runs and --keep-last must be >= 1, --rows >= 50")

    root = Path(args.keep or tempfile.mkdtemp(prefix="gc-bench-"))
    try:
        data = write_sample(root / "data", rows=args.rows)
        config = small_config(root, data, skip_tuning=True)
        run_seconds = []
        for run in range(1, args.runs + 1):
            if run > 1:
                spans.add_span(
                    _span_csv(root / f"span{run}.csv", args.rows, run), data, config.schema_path
                )
            started = time.monotonic()
            status, _ = run_pipeline(config)
            run_seconds.append(time.monotonic() - started)
            print(f"run {run}: exit {status}, {run_seconds[-1]:.0f} s", flush=True)
            if status != Exit.OK:
                return status
        served = len(list(Path(config.model_serving_dir).iterdir()))
        store_file = Path(config.metadata_connection)
        before = gc.size_of(config.pipeline_root)
        store_before = store_file.stat().st_size
        store = open_store(config.metadata_connection, writable=True)
        policy = Retention(keep_last=args.keep_last, keep_days=0)
        started = time.monotonic()
        plan = gc.plan(
            store,
            pipeline_name=config.pipeline_name,
            pipeline_root=config.pipeline_root,
            serving_dir=config.model_serving_dir,
            model_name=config.model_name,
            policy=policy,
        )
        plan_seconds = time.monotonic() - started
        result = gc.apply(store, plan, "gc_bench")
        after = gc.size_of(config.pipeline_root)
        mean = sum(run_seconds) / len(run_seconds)
        print(
            f"\n{args.runs} runs ({args.rows} rows a span, mean {mean:.0f} s a run), {served} "
            f"version(s) in serving_model/, policy keep_last={args.keep_last}:\n"
            f"  pipeline root  before {_mib(before)}  after {_mib(after)}  "
            f"freed {_mib(before - after)} ({100 * (before - after) / before:.0f}%)\n"
            f"  artifacts      deleted {len(plan.deleted)}, kept {len(plan.kept)}\n"
            f"  metadata store {_mib(store_before)} -> {_mib(store_file.stat().st_size)}"
            " (DELETED artifacts keep their metadata)\n"
            f"  gc time        plan {plan_seconds:.2f} s, apply {result.seconds:.2f} s"
        )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
