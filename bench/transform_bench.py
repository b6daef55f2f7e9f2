"""Transform's time and memory per row: TFX's stock executor against this project's.

    .venv/bin/python bench/transform_bench.py [--rows 100000,1000000] [--executors stock,ours]
        [--beam-mode in-memory|multi-processing] [--rounds 1]

For each size, a taxi-like span (bench/generate_rows.py) goes once through ExampleGen and the
RowCleaner (pipeline/testing/transform_run.py), as in the pipeline; then each Transform
executor runs alone in its own process (so peak RSS is its own) with the pipeline's Transform
arguments (lean: no statistics, no analyzer cache; train and eval materialized) and the
chosen Beam mode (multi-processing: one worker per core, as a 1M-row pipeline run uses).
Printed per executor: seconds (the executor's Do, not the imports), rows/s over train + eval,
peak RSS (the executor's process, and its Beam workers' largest in multi-processing), then
ours against stock, and whether the outputs agree: the transformed examples compared parsed
(exactly, and the largest relative float difference) and the transform graph's metadata and assets.
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
# import by their own names (the project's packages come from the editable install / PYTHONPATH).
from _argtypes import row_counts
from generate_rows import write_span

from pipeline.config import PROJECT_ROOT, PipelineConfig
from pipeline.local.beam_mode import IN_MEMORY, MULTI_PROCESSING, beam_args

EXECUTORS = ("stock", "ours")


def _executor_class(name: str) -> type:
    if name == "stock":
        from tfx.components.transform.executor import Executor

        return Executor
    from pipeline.transform_executor import FastIOTransformExecutor

    return FastIOTransformExecutor


def run_one(name: str, examples_uri: str, out: str, beam: str) -> dict:
    """One Transform executor (in this process): seconds, peak RSS (MiB)."""
    import modules  # noqa: F401 - the Keras-2 switch, before TensorFlow loads
    from pipeline.testing.transform_run import run_transform

    cls = _executor_class(name)
    started = time.monotonic()
    run_transform(cls, examples_uri, out, PipelineConfig(), beam_args(beam))
    seconds = time.monotonic() - started
    return {
        "executor": name,
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def prepare(data_root: str, out: str) -> dict:
    """ExampleGen + RowCleaner over data_root (in this process): the cleaned Examples' URI."""
    import modules  # noqa: F401
    from pipeline.testing.transform_run import prepare_examples

    return {"examples": prepare_examples(data_root, out, PipelineConfig())}


def compare(stock_out: str, ours_out: str) -> dict:
    """Whether two runs' outputs agree (see the module docstring)."""
    import modules  # noqa: F401
    from pipeline.testing.transform_run import float_gap, graph_files, transformed_rows

    result = {}
    for split in ("train", "eval"):
        a = transformed_rows(os.path.join(stock_out, "transformed_examples"), split)
        b = transformed_rows(os.path.join(ours_out, "transformed_examples"), split)
        result[split] = {
            "rows": [sum(a.values()), sum(b.values())],
            "identical": a == b,
            "max_float_gap_rel": float_gap(a, b),
        }
    ga = graph_files(os.path.join(stock_out, "transform_graph"))
    gb = graph_files(os.path.join(ours_out, "transform_graph"))
    result["graph_files_identical"] = ga == gb
    result["graph_files"] = len(ga)
    return result


def _subprocess(args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=PROJECT_ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=row_counts, default="100000")
    parser.add_argument("--executors", default=",".join(EXECUTORS))
    parser.add_argument("--beam-mode", choices=(IN_MEMORY, MULTI_PROCESSING), default=IN_MEMORY)
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs per executor")
    parser.add_argument("--role", choices=("run", "prepare", "compare"), help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:  # zero rounds would compare two empty outputs and call them identical
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    if args.role:
        if args.role == "run":
            result = run_one(*args.paths, beam=args.beam_mode)
        else:
            result = {"prepare": prepare, "compare": compare}[args.role](*args.paths)
        print(json.dumps(result))
        return 0
    names = [n for n in args.executors.split(",") if n]
    if not names or set(names) - set(EXECUTORS):
        print(f"error: executors are {', '.join(EXECUTORS)}", file=sys.stderr)
        return 2
    load = os.getloadavg()
    print(
        f"load: {load[0]:.2f} {load[1]:.2f} (1, 5 min), {os.cpu_count()} cores, "
        f"beam {args.beam_mode}"
    )
    print(
        f"{'rows':>9} {'executor':<9} {'seconds':>8} {'rows/s':>8} {'peak RSS':>9} {'workers':>9}"
    )
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="transform_bench_") as tmp:
            write_span(Path(tmp, "data"), rows)
            examples = _subprocess(["--role", "prepare", str(Path(tmp, "data")), str(tmp)])
            results: dict[str, list[dict]] = {n: [] for n in names}
            for round_ in range(args.rounds):
                for name in names:
                    out = str(Path(tmp, f"{name}-{round_}"))
                    r = _subprocess(
                        [
                            "--role",
                            "run",
                            "--beam-mode",
                            args.beam_mode,
                            name,
                            examples["examples"],
                            out,
                        ]
                    )
                    results[name].append(r)
                    print(
                        f"{rows:>9} {name:<9} {r['seconds']:8.1f} {rows / r['seconds']:8.0f} "
                        f"{r['peak_rss_mib']:7.0f}Mi {r['workers_peak_rss_mib']:7.0f}Mi",
                        flush=True,
                    )
            _report(rows, names, results, tmp)
    load = os.getloadavg()
    print(f"load at the end: {load[0]:.2f} {load[1]:.2f} (1, 5 min)")
    return 0


def _report(rows: int, names: list[str], results: dict, tmp: str) -> None:
    if set(EXECUTORS) - set(names):
        return
    for round_, (ours, stock) in enumerate(zip(results["ours"], results["stock"], strict=True)):
        print(
            f"  {rows} rows, round {round_ + 1}, ours / stock: time "
            f"x{ours['seconds'] / stock['seconds']:.2f}, rows/s "
            f"x{stock['seconds'] / ours['seconds']:.2f}, peak RSS "
            f"x{ours['peak_rss_mib'] / stock['peak_rss_mib']:.2f}"
        )
    agree = _subprocess(["--role", "compare", str(Path(tmp, "stock-0")), str(Path(tmp, "ours-0"))])
    print(f"  outputs, ours vs stock (round 1): {json.dumps(agree)}")


if __name__ == "__main__":
    sys.exit(main())
