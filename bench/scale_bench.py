"""The full pipeline (--skip-tuning) at growing row counts, Beam in-memory vs multi-processing.

    .venv/bin/python bench/scale_bench.py [--rows 100000,1000000] [--keep DIR] [--seed 0]
        [--modes in-memory,multi-processing,multi-processing+cold] [--max-rss-gib 8]

For each row count, bench/generate_rows.py writes a taxi-like span, then the pipeline runs on it
once per Beam mode, back to back, each in a fresh subprocess with a fresh output directory (cold,
no baseline model). Per run it prints wall time, peak RSS -- of the runner process alone
(os.wait4: the largest single process) and of the whole process tree (sampled every 0.5 s: with
multi-processing the Beam workers are separate processes; summed RSS, and summed PSS, which
counts pages shared between processes once) -- each component's seconds as ML
Metadata recorded them and rows/s (input rows / seconds; the Trainer runs a fixed number of
steps, so its rows/s only says it does not grow with rows), the Evaluator's AUC and accuracy.
Last, ratios within this one invocation: largest vs smallest row count per mode (peak RSS,
rows/s per component) and multi-processing vs in-memory wall time per row count, plus the load
average: compare ratios, not seconds across runs. A run whose tree RSS passes --max-rss-gib is
stopped (the machine is shared) and reported as such.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Run as a script (`python bench/<this>.py`): bench/ is first on sys.path, so the sibling modules
# import by their own names (the project's packages come from the editable install).
from _argtypes import row_counts
from generate_rows import write_span

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "runners" / "local_runner.py"
PIPELINE_NAME = "taxi_scale"
# Components whose seconds scale with the input (the rest are fixed cost, shown but not rated).
DATA_STAGES = ("CsvExampleGen", "RowCleaner", "StatisticsGen", "Transform", "Evaluator")
# Issue 26's targets at 1M rows: every data stage at least this many rows/s, the Evaluator this
# many eval rows/s (its eval split: EVAL_SHARE of the rows, ExampleGen's 4:1 hash split).
STAGE_ROWS_PER_S, EVAL_ROWS_PER_S, EVAL_SHARE = 20_000, 10_000, 0.2


PAGE = os.sysconf("SC_PAGE_SIZE")


# A mode ending in COLD (`--modes auto,auto+cold`) runs that Beam mode with
# `--cold-beam-workers`: Beam's own worker start-up instead of the warm pool.
COLD = "+cold"


def runner_flags(mode: str) -> list[str]:
    """The local runner's flags for a --modes entry."""
    if mode.endswith(COLD):
        return ["--beam-mode", mode[: -len(COLD)], "--cold-beam-workers"]
    return ["--beam-mode", mode]


def pss(pid: int) -> int:
    """Proportional set size in bytes (/proc/PID/smaps_rollup): each shared page divided among
    the processes sharing it, so a tree's sum counts TensorFlow's libraries and a forked
    worker's inherited pages once, where summed RSS counts them in every process; 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(root: int) -> tuple[int, list[int]]:
    """(summed RSS bytes, pids) of `root` and its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state, ppid, ...; rss (pages) is field 24 of stat, here index 21.
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * PAGE
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return sum(rss.get(pid, 0) for pid in pids), pids


class TreeRss(threading.Thread):
    """Samples the summed RSS of a process and its descendants; stops the tree past a limit."""

    def __init__(self, pid: int, limit_bytes: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.limit = pid, limit_bytes
        self.peak = self.peak_pss = 0
        self.samples: list[tuple[float, int, int]] = []  # (epoch s, tree RSS, tree PSS bytes)
        self.killed = False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            total, pids = tree_rss(self.pid)
            total_pss = sum(pss(pid) for pid in pids)
            self.peak = max(self.peak, total)
            self.peak_pss = max(self.peak_pss, total_pss)
            self.samples.append((time.time(), total, total_pss))
            if total > self.limit and not self.killed:
                self.killed = True
                for pid in reversed(pids):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def run_pipeline(data_root: Path, out: Path, mode: str, log: Path, limit: int) -> dict:
    """One cold --skip-tuning run in a subprocess: wall, peak RSS, exit status."""
    cmd = [
        sys.executable,
        str(RUNNER),
        "--skip-tuning",
        "--pipeline-name",
        PIPELINE_NAME,
        "--data-root",
        str(data_root),
        "--output-dir",
        str(out),
        "--serving-model-dir",
        str(out / "serving_model"),
        *runner_flags(mode),
    ]
    with open(log, "w") as f:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        sampler = TreeRss(proc.pid, limit)
        sampler.start()
        _, raw, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        sampler.done.set()
        sampler.join()
    return {
        "wall": wall,
        "rss_mib": usage.ru_maxrss / 1024,
        "tree_mib": sampler.peak / 2**20,
        "tree_pss_mib": sampler.peak_pss / 2**20,
        "status": os.waitstatus_to_exitcode(raw),
        "killed": sampler.killed,
        "samples": sampler.samples,
    }


def read_run(out: Path, samples: list[tuple[float, int, int]]) -> tuple[dict, dict, dict]:
    """(component -> seconds, component -> (peak tree RSS, peak tree PSS) MiB while it ran,
    overall metrics) of the run, from its ML Metadata (execution start/end) and the samples:
    which component the peak over all processes belongs to (issue 26's 2 GiB)."""
    from metadata.connection import sqlite_store_path
    from metadata.store import open_store
    from pipeline.local.report import latest_run_report

    path = sqlite_store_path(str(out))
    report = latest_run_report(path, PIPELINE_NAME) if os.path.exists(path) else None
    if report is None:
        return {}, {}, {}
    run = open_store(path).latest_run(PIPELINE_NAME)
    peaks = {}
    for e in run.executions:
        during = [s for s in samples if e.started_ms / 1e3 <= s[0] <= e.ended_ms / 1e3 + 0.5]
        if during:
            peaks[e.node_id] = tuple(max(s[i] for s in during) / 2**20 for i in (1, 2))
    return {c.node_id: c.seconds for c in report.components}, peaks, report.metrics


def _metric(metrics: dict[str, float], name: str) -> float:
    hits = [v for k, v in metrics.items() if k.lower().endswith(name)]
    return hits[0] if hits else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--rows", type=row_counts, default="100000,1000000", help="comma-separated row counts"
    )
    p.add_argument(
        "--modes",
        default="in-memory,multi-processing",
        help=f"Beam modes to compare; a mode ending in {COLD} also passes --cold-beam-workers",
    )
    p.add_argument("--keep", help="directory for data and outputs (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-rss-gib", type=float, default=8.0, help="stop a run past this")
    args = p.parse_args(argv)
    sizes = args.rows
    modes = args.modes.split(",")
    known = ("auto", "in-memory", "multi-processing")
    if not all(m.removesuffix(COLD) in known for m in modes):
        p.error(f"--modes: each of {', '.join(known)}, optionally with {COLD}; got {args.modes!r}")
    if len(set(modes)) < len(modes):
        # The second run would find the first one's outputs and stop as up to date.
        p.error(f"--modes: each mode once (they share an output directory); got {args.modes!r}")
    base = Path(args.keep or tempfile.mkdtemp(prefix="scale_bench_"))
    base.mkdir(parents=True, exist_ok=True)
    limit = int(args.max_rss_gib * 2**30)
    loads = [os.getloadavg()[0]]
    results: dict[tuple[int, str], dict] = {}
    for n in sizes:
        data = base / f"data_{n}"
        if not (data / "span-1" / "data.csv").exists():
            write_span(data, n, seed=args.seed)
        csv_mib = (data / "span-1" / "data.csv").stat().st_size / 2**20
        for mode in modes:
            out = base / f"run_{n}_{mode}"
            r = run_pipeline(data, out, mode, base / f"run_{n}_{mode}.log", limit)
            r["seconds"], r["peaks"], r["metrics"] = read_run(out, r.pop("samples"))
            r["csv_mib"] = csv_mib
            results[n, mode] = r
            loads.append(os.getloadavg()[0])
            status = "stopped: over the RSS limit" if r["killed"] else f"exit {r['status']}"
            print(
                f"{n:>9,} rows ({csv_mib:6.1f} MiB CSV) {mode:<17} {r['wall']:8.1f} s  "
                f"peak RSS {r['rss_mib']:6.0f} MiB (tree {r['tree_mib']:6.0f}, tree PSS "
                f"{r['tree_pss_mib']:6.0f})  {status}  "
                f"AUC {_metric(r['metrics'], 'auc'):.4f} "
                f"accuracy {_metric(r['metrics'], 'binary_accuracy'):.4f}",
                flush=True,
            )
            for name, secs in r["seconds"].items():
                rate = f"{n / secs:10,.0f} rows/s" if secs > 0 else " " * 17
                if name == "Evaluator" and secs > 0:
                    rate += f" (~{n * EVAL_SHARE / secs:,.0f} eval rows/s, target "
                    rate += f"{EVAL_ROWS_PER_S:,})"
                elif name in DATA_STAGES and secs > 0:
                    rate += f" (target {STAGE_ROWS_PER_S:,})"
                peak = r["peaks"].get(name)
                tree = f"  tree RSS up to {peak[0]:6.0f} MiB, PSS {peak[1]:6.0f}" if peak else ""
                print(f"    {name:<28} {secs:8.1f} s {rate}{tree}", flush=True)

    print(f"\nload average (1 min) during the runs: {', '.join(f'{x:.1f}' for x in loads)}")
    small, large = sizes[0], sizes[-1]
    if large != small:
        print(f"\n{large:,} vs {small:,} rows (target: peak RSS <= 1.25x, rows/s >= 0.8x):")
        for mode in modes:
            a, b = results[small, mode], results[large, mode]
            line = [
                f"  {mode:<17} peak RSS {b['rss_mib'] / a['rss_mib']:.2f}x "
                f"(tree {b['tree_mib'] / max(a['tree_mib'], 1):.2f}x)"
            ]
            for name in (*DATA_STAGES, "Trainer"):
                sa, sb = a["seconds"].get(name), b["seconds"].get(name)
                if sa and sb:
                    line.append(f"{name} {(large / sb) / (small / sa):.2f}x")
            print(", ".join(line))
    if len(modes) > 1:
        print(f"\n{modes[1]} vs {modes[0]} (wall, peak tree RSS) at the same row count:")
        for n in sizes:
            a, b = results[n, modes[0]], results[n, modes[1]]
            print(
                f"  {n:>9,} rows: wall {b['wall'] / a['wall']:.2f}x, "
                f"tree RSS {b['tree_mib'] / max(a['tree_mib'], 1):.2f}x"
            )
    print(f"\noutputs and logs: {base}")
    return 0 if all(r["status"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
