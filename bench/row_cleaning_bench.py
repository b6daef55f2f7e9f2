"""What the RowCleaner costs per row, against StatisticsGen on the same rows as the baseline.

    python bench/row_cleaning_bench.py [--rows 100000,1000000] [--bad 0.005] [--duplicates 0.005]
        [--shards 1] [--multi-processing] [--against main]

For each size, taxi-like rows are drawn with replacement from span 1 (data/taxi/span-1, 15,002
rows) with noise on the numbers (fares, miles and durations scaled by a lognormal factor,
coordinates jittered, hours shifted), a share of them made to break the schema and a share
duplicated, and written as one gzipped TFRecord split the way CsvExampleGen writes one. Then, each
in its own process (so peak RSS is per stage) with the pipeline's default Beam options (in-memory
DirectRunner, one worker), the RowCleaner's executor and TFX's StatisticsGen executor (with the
pipeline's statistics options) run on that split. Printed per stage: seconds (executor only, not
the imports), rows/s, peak RSS, and the cleaner's cost relative to StatisticsGen.

--shards N writes the split as N files (ExampleGen writes one per bundle); --multi-processing runs
both with the pipeline's multi-processing Beam options (one worker per core). With --against REF
the RowCleaner as it is at git REF (exported with `git archive`) runs too, on the same rows in the
same invocation, as `RowCleaner@REF`, and this checkout's is compared with it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script (`python bench/<this>.py`): bench/ is first on sys.path, so the sibling modules
# import by their own names.
import _argtypes as argtypes
from example_gen_bench import export_ref

import modules  # noqa: F401 - the Keras-2 switch, before TensorFlow loads
from pipeline.config import PROJECT_ROOT, in_memory_beam_args, multi_processing_beam_args

SPAN_1 = PROJECT_ROOT / "data" / "taxi" / "span-1" / "data.csv"
SCHEMA = PROJECT_ROOT / "schema" / "schema.pbtxt"
SPLIT = "train"


def _noisy(row: dict, rng: random.Random) -> dict:
    row = dict(row)
    for key, integer in (("fare", False), ("trip_miles", False), ("trip_seconds", True)):
        if row[key]:
            value = float(row[key]) * math.exp(rng.gauss(0, 0.1))
            row[key] = str(round(value)) if integer else f"{value:.2f}"
    for key in ("pickup_latitude", "dropoff_latitude", "pickup_longitude", "dropoff_longitude"):
        if row[key]:
            row[key] = f"{float(row[key]) + rng.gauss(0, 0.002):.6f}"
    row["trip_start_hour"] = str((int(row["trip_start_hour"]) + rng.choice((0, 0, 1, -1))) % 24)
    return row


_BAD = (
    {"payment_type": "Bitcoin"},
    {"fare": "-3.0"},
    {"trip_start_hour": "31"},
    {"tips": ""},
)


def write_rows(
    dest: Path, rows: int, bad: float, duplicates: float, seed: int = 0, shards: int = 1
) -> Path:
    """`rows` serialized tf.Examples in dest/Split-train/data_tfrecord-SSSSS-of-NNNNN.gz (rows
    dealt round-robin over `shards` files)."""
    import tensorflow as tf

    from data_stats import measures as drift_measures
    from pipeline.ingest.spans import schema_columns

    with open(SPAN_1, newline="") as f:
        source = list(csv.DictReader(f))
    columns = schema_columns(str(SCHEMA))
    rng = random.Random(seed)
    out = dest / f"Split-{SPLIT}"
    out.mkdir(parents=True)
    written, batch = [], 10_000
    writers = [
        tf.io.TFRecordWriter(str(out / f"data_tfrecord-{i:05d}-of-{shards:05d}.gz"), "GZIP")
        for i in range(shards)
    ]
    n = 0
    try:
        for start in range(0, rows, batch):
            chunk = []
            for _ in range(min(batch, rows - start)):
                r = rng.random()
                if r < duplicates and written:
                    chunk.append(rng.choice(written))
                    continue
                row = _noisy(rng.choice(source), rng)
                if r < duplicates + bad:
                    row.update(rng.choice(_BAD))
                chunk.append(row)
            for record in drift_measures.examples_from_rows(chunk, columns):
                writers[n % shards].write(record)
                n += 1
            written = chunk[-1000:]
    finally:
        for writer in writers:
            writer.close()
    return dest


def _examples(uri: str):
    from tfx.types import artifact_utils, standard_artifacts

    examples = standard_artifacts.Examples()
    examples.uri = uri
    examples.split_names = artifact_utils.encode_split_names([SPLIT])
    return examples


def run_stage(stage: str, input_uri: str, output_root: str, beam: str = "in-memory") -> dict:
    """One executor on the rows under `input_uri`: seconds, peak RSS (MiB), what it produced.
    Peak RSS is this process's (with --multi-processing, Beam's workers are other processes)."""
    from tfx.components.statistics_gen import executor as statistics_gen
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import standard_artifacts

    from data_stats.measures import statistics_options
    from pipeline.validation.row_cleaner import Executor as RowCleanerExecutor
    from pipeline.validation.row_cleaner import QuarantinedExamples

    beam_args = (
        multi_processing_beam_args() if beam == "multi-processing" else in_memory_beam_args()
    )
    context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args)
    examples = _examples(input_uri)
    started = time.monotonic()
    if stage == "cleaner":
        schema = standard_artifacts.Schema()
        schema.uri = str(SCHEMA.parent)
        cleaned = _examples(os.path.join(output_root, "cleaned"))
        quarantine = QuarantinedExamples()
        quarantine.uri = os.path.join(output_root, "quarantine")
        RowCleanerExecutor(context).Do(
            {"examples": [examples], "schema": [schema]},
            {"cleaned_examples": [cleaned], "quarantine": [quarantine]},
            {},
        )
        produced = {
            k: quarantine.get_int_custom_property(k)
            for k in ("rows_in", "duplicates", "quarantined", "clean")
        }
    else:
        statistics = standard_artifacts.ExampleStatistics()
        statistics.uri = os.path.join(output_root, "statistics")
        statistics_gen.Executor(context).Do(
            {"examples": [examples]},
            {"statistics": [statistics]},
            {"stats_options_json": statistics_options().to_json(), "exclude_splits": "[]"},
        )
        produced = {}
    seconds = time.monotonic() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"stage": stage, "seconds": seconds, "peak_rss_mib": peak_mib, **produced}


def _in_subprocess(
    stage: str, input_uri: str, output_root: str, beam: str, code_root: Path = PROJECT_ROOT
) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_root))
    proc = subprocess.run(
        [sys.executable, __file__, "--stage", stage, input_uri, output_root, beam],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=code_root,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=argtypes.row_counts, default="100000,1000000")
    parser.add_argument("--bad", type=argtypes.fraction, default=0.005)
    parser.add_argument("--duplicates", type=argtypes.fraction, default=0.005)
    parser.add_argument(
        "--shards", type=argtypes.whole(1), default=1, help="files the split is written as"
    )
    parser.add_argument("--multi-processing", action="store_true", help="one Beam worker a core")
    parser.add_argument("--against", default="", help="also run the RowCleaner at git REF")
    parser.add_argument("--stage", choices=("cleaner", "statistics"), help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        print(json.dumps(run_stage(args.stage, *args.paths)))
        return 0

    beam = "multi-processing" if args.multi_processing else "in-memory"
    with tempfile.TemporaryDirectory(prefix="row_cleaning_bench_code_") as code_tmp:
        stages = [
            ("statistics", "StatisticsGen", PROJECT_ROOT),
            ("cleaner", "RowCleaner", PROJECT_ROOT),
        ]
        if args.against:
            code = export_ref(args.against, Path(code_tmp, "code"))
            stages.append(("cleaner", f"RowCleaner@{args.against}", code))
        load = os.getloadavg()
        print(f"load: {load[0]:.2f} {load[1]:.2f} (1, 5 min), {os.cpu_count()} cores; Beam {beam}")
        print(
            f"{'rows':>9} {'stage':<18} {'seconds':>8} {'rows/s':>9} {'µs/row':>7} {'peak RSS':>9}"
        )
        for rows in args.rows:
            _run_size(rows, args, beam, stages)
        load = os.getloadavg()
        print(f"load after: {load[0]:.2f} {load[1]:.2f} (1, 5 min)")
    return 0


def _run_size(rows: int, args, beam: str, stages: list) -> None:
    with tempfile.TemporaryDirectory(prefix="row_cleaning_bench_") as tmp:
        started = time.monotonic()
        data = write_rows(
            Path(tmp, "examples"), rows, args.bad, args.duplicates, shards=args.shards
        )
        made = time.monotonic() - started
        results = {}
        for stage, label, code in stages:
            out = Path(tmp, label.replace("@", "_"))
            results[label] = _in_subprocess(stage, str(data), str(out), beam, code)
            r = results[label]
            print(
                f"{rows:>9} {label:<18} {r['seconds']:8.1f} {rows / r['seconds']:9.0f} "
                f"{r['seconds'] / rows * 1e6:7.1f} {r['peak_rss_mib']:7.0f}Mi",
                flush=True,
            )
        s = results["StatisticsGen"]
        for label, c in results.items():
            if label == "StatisticsGen":
                continue
            print(
                f"{rows:>9} {label} / StatisticsGen: time x{c['seconds'] / s['seconds']:.2f}, "
                f"peak RSS x{c['peak_rss_mib'] / s['peak_rss_mib']:.2f}; cleaned: "
                f"{c['rows_in']} in, {c['duplicates']} duplicates, {c['quarantined']} "
                f"quarantined, {c['clean']} clean (rows generated in {made:.0f}s)"
            )
        if args.against:
            c, before = results["RowCleaner"], results[f"RowCleaner@{args.against}"]
            print(
                f"{rows:>9} RowCleaner / RowCleaner@{args.against}: time "
                f"x{c['seconds'] / before['seconds']:.2f}, rows/s "
                f"x{before['seconds'] / c['seconds']:.2f}, peak RSS "
                f"x{c['peak_rss_mib'] / before['peak_rss_mib']:.2f}"
            )


if __name__ == "__main__":
    sys.exit(main())
