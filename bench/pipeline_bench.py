"""Pipeline wall time and peak memory: cold, cached re-runs, and Beam's two DirectRunner modes.

    .venv/bin/python bench/pipeline_bench.py [--skip-tuning] [--keep DIR]

Each run is the real local runner in a fresh subprocess (so peak RSS is that run's own),
on the default data. Prints seconds, peak RSS and ratios against the cold in-memory run
measured in the same invocation.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "runners" / "local_runner.py"


def _run(out: Path, extra: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit status) of one runner subprocess."""
    cmd = [
        sys.executable,
        str(RUNNER),
        "--output-dir",
        str(out),
        "--serving-model-dir",
        str(out / "serving_model" / "taxi"),
        *extra,
    ]
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "bench-runner.log"
    with open(log_path, "w") as log:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        # wait4 gives this child's own resource usage (its peak RSS, not the maximum so far).
        _, raw_status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    status = os.waitstatus_to_exitcode(raw_status)
    if status != 0:
        print(log_path.read_text()[-3000:], file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, status


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--skip-tuning", action="store_true")
    p.add_argument("--keep", help="directory for the runs' outputs (default: a temp dir)")
    args = p.parse_args()
    base = Path(args.keep or tempfile.mkdtemp(prefix="pipeline_bench_"))
    common = ["--skip-tuning"] if args.skip_tuning else []
    cases = [
        ("cold, in-memory (default)", base / "in_memory", common),
        # The 2nd run re-evaluates: the Resolver now finds run 1's blessed model as baseline.
        ("re-run, unchanged data", base / "in_memory", common),
        ("3rd run, unchanged data", base / "in_memory", common),
        ("cold, multi-processing", base / "multi", [*common, "--multi-processing"]),
    ]
    results = []
    for name, out, extra in cases:
        wall, peak, status = _run(out, extra)
        results.append((name, wall, peak, status))
        print(f"{name:<28} {wall:7.1f} s  peak RSS {peak:7.0f} MiB  exit {status}", flush=True)
    baseline = results[0][1]
    print("\nrun                          seconds  peak MiB  vs cold in-memory")
    for name, wall, peak, status in results:
        flag = "" if status == 0 else "  FAILED"
        print(f"{name:<28} {wall:7.1f}  {peak:8.0f}  {wall / baseline:5.2f}x{flag}")
    print(f"\noutputs: {base}")
    return 0 if all(r[3] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
