"""ExampleGen's time and memory per row: TFX's CsvExampleGen executor against this project's.

    .venv/bin/python bench/example_gen_bench.py [--rows 100000,1000000] [--executors tfx,ours]
        [--against main] [--beam-mode in-memory|multi-processing]

For each size, a taxi-like span (bench/generate_rows.py) is written once; then each executor
runs alone in its own process (so peak RSS is its own) with the pipeline's default Beam options
(in-memory DirectRunner; --beam-mode multi-processing: the arguments a large span's run uses,
one worker process per core) and the pipeline's train/eval split. TFX's executor parses the CSV
once, buffers the parsed lines for the column-type side input, and writes each split after a
`beam.Reshuffle()` (a GroupByKey the DirectRunner holds in memory); this project's parses twice
(pipeline/ingest/csv_example_gen.py) and shuffles through disk (pipeline/ingest/example_shuffle.py).
Printed per executor: seconds (the executor, not the imports), rows/s, peak RSS, rows written,
then ours against TFX's at each size and each executor's 1M/100k-style ratios between sizes.
With --against REF, this project's executor as it is at git REF (exported with `git archive`)
runs too, as `ours@REF`, and this checkout's is compared with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script (`python bench/<this>.py`): bench/ is first on sys.path, so the sibling modules
# import by their own names (the project's packages come from the editable install).
from _argtypes import row_counts
from generate_rows import write_span

import modules  # noqa: F401 - the Keras-2 switch, before TensorFlow loads
from pipeline.config import PROJECT_ROOT
from pipeline.local.beam_mode import IN_MEMORY, MULTI_PROCESSING, beam_args

EXECUTORS = ("tfx", "ours")


def run_executor(name: str, data_root: str, out: str, mode: str = IN_MEMORY) -> dict:
    """One ExampleGen executor on data_root/span-1 in Beam mode `mode`: seconds, peak RSS (MiB;
    this process, and its largest child's), rows written."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tfx.components.example_gen.csv_example_gen.executor import Executor as TfxExecutor
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    from pipeline.ingest.csv_example_gen import StreamingCsvExampleGenExecutor
    from pipeline.ingest.sources import output_config

    executor_cls = {"tfx": TfxExecutor, "ours": StreamingCsvExampleGenExecutor}[name]
    examples = standard_artifacts.Examples()
    examples.uri = out
    input_config = example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern="span-1/*")]
    )
    properties = {
        "input_base": data_root,
        "input_config": json_format.MessageToJson(input_config),
        "output_config": json_format.MessageToJson(output_config()),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
    }
    context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args(mode))
    started = time.monotonic()
    executor_cls(context).Do({}, {"examples": [examples]}, properties)
    seconds = time.monotonic() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The largest child process's peak: Beam's workers in multi-processing mode (ended with the
    # pipeline), and in either mode TFX's sdist build, forked at the executor's size.
    workers_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    files = tf.io.gfile.glob(os.path.join(out, "Split-*", "*"))
    rows = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    return {
        "executor": name,
        "seconds": seconds,
        "peak_rss_mib": peak_mib,
        "worker_peak_rss_mib": workers_mib,
        "rows": rows,
    }


def _in_subprocess(
    name: str, data_root: str, out: str, code_root: Path = PROJECT_ROOT, mode: str = IN_MEMORY
) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_root))
    proc = subprocess.run(
        [sys.executable, __file__, "--executor", name, "--beam-mode", mode, data_root, out],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=code_root,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=row_counts, default="100000,1000000")
    parser.add_argument("--executors", default=",".join(EXECUTORS))
    parser.add_argument("--against", default="", help="also run this project's executor at REF")
    parser.add_argument("--beam-mode", choices=(IN_MEMORY, MULTI_PROCESSING), default=IN_MEMORY)
    parser.add_argument("--executor", choices=EXECUTORS, help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.executor:
        print(json.dumps(run_executor(args.executor, *args.paths, mode=args.beam_mode)))
        return 0
    names = [n for n in args.executors.split(",") if n]
    unknown = sorted(set(names) - set(EXECUTORS))
    if unknown or not names:
        what = f"unknown executor {unknown[0]!r}" if unknown else "no executor"
        print(f"error: {what} (choose from {', '.join(EXECUTORS)})", file=sys.stderr)
        return 2
    load = os.getloadavg()
    print(f"load: {load[0]:.2f} {load[1]:.2f} (1, 5 min), {os.cpu_count()} cores")
    print(f"Beam mode: {args.beam_mode}")
    print(
        f"{'rows':>9} {'executor':<9} {'seconds':>8} {'rows/s':>8} {'peak RSS':>9} "
        f"{'children':>9} {'written':>9}"
    )
    results: dict[tuple[int, str], dict] = {}
    sizes = args.rows
    against = f"ours@{args.against}" if args.against else ""
    code_roots = dict.fromkeys(names, PROJECT_ROOT)
    with tempfile.TemporaryDirectory(prefix="example_gen_bench_code_") as code_tmp:
        if against:
            code_roots[against] = export_ref(args.against, Path(code_tmp, "code"))
            names = [*names, against]
        for rows in sizes:
            _run_size(rows, names, code_roots, results, args.beam_mode)
    print("ratios (same invocation):")
    if against and "ours" in names:
        for rows in sizes:
            ours, before = results[rows, "ours"], results[rows, against]
            print(
                f"  {rows} rows, ours / {against}: time x{ours['seconds'] / before['seconds']:.2f}"
                f", rows/s x{before['seconds'] / ours['seconds']:.2f}, "
                f"peak RSS x{ours['peak_rss_mib'] / before['peak_rss_mib']:.2f}"
            )
    _print_ratios(names, sizes, results)
    return 0


def export_ref(ref: str, dest: Path) -> Path:
    """The project's code at git `ref`, as files under dest (the checkout is not touched)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "archive", ref], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"error: cannot export git ref {ref!r}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _run_size(
    rows: int, names: list[str], code_roots: dict, results: dict, mode: str = IN_MEMORY
) -> None:
    """Every executor on one freshly written span of `rows` rows."""
    with tempfile.TemporaryDirectory(prefix="example_gen_bench_") as tmp:
        write_span(Path(tmp, "data"), rows)
        for name in names:
            executor = name.split("@")[0]
            r = _in_subprocess(
                executor, str(Path(tmp, "data")), str(Path(tmp, name)), code_roots[name], mode
            )
            results[rows, name] = r
            print(
                f"{rows:>9} {name:<9} {r['seconds']:8.1f} {rows / r['seconds']:8.0f} "
                f"{r['peak_rss_mib']:7.0f}Mi {r['worker_peak_rss_mib']:7.0f}Mi {r['rows']:>9}"
            )


def _print_ratios(names: list[str], sizes: list[int], results: dict) -> None:
    if set(EXECUTORS) <= set(names):
        for rows in sizes:
            ours, tfx = results[rows, "ours"], results[rows, "tfx"]
            print(
                f"  {rows} rows, ours / TFX's: time x{ours['seconds'] / tfx['seconds']:.2f}, "
                f"peak RSS x{ours['peak_rss_mib'] / tfx['peak_rss_mib']:.2f}"
            )
    for name in names:
        for small, big in zip(sizes, sizes[1:], strict=False):
            a, b = results[small, name], results[big, name]
            memory = b["peak_rss_mib"] / a["peak_rss_mib"]
            speed = (big / b["seconds"]) / (small / a["seconds"])
            print(f"  {name} {big} / {small} rows: peak RSS x{memory:.2f}, rows/s x{speed:.2f}")


if __name__ == "__main__":
    sys.exit(main())
