"""A small pipeline run with and without pipeline/local/beam_fixed_cost.py, alternated.

    .venv/bin/python bench/beam_fixed_cost_bench.py [--rows 400] [--rounds 2]

Each round runs the test suite's small pipeline (pipeline/testing/samples.py: `--rows` rows of
the taxi span, few training steps, one tuner trial) twice, cold, each in a fresh process and
output directory: once as the local run is (Beam's introspection remembered, dill's trace
switch set only on a change), once with `beam_fixed_cost.install` turned into a no-op (Beam's
own code; the local run's other fixes stay). The order alternates between rounds so neither
side always runs on a warmer page cache. Printed per run: the wall of `run_pipeline` and the
seconds of each Beam component and their sum (where the change acts; the Tuner and Trainer
swing by seconds between runs on their own); then per round and overall (medians) the ratios
with / without of the wall and of the Beam components' sum.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIDES = ("with", "without")
BEAM_COMPONENTS = ("CsvExampleGen", "RowCleaner", "StatisticsGen", "Transform", "Evaluator")


def run_one(side: str, rows: int, out: str) -> dict:
    """The small pipeline once, in this process: wall and per-component seconds."""
    import modules  # noqa: F401 - the Keras-2 switch, before TensorFlow loads
    from pipeline.local import beam_fixed_cost
    from pipeline.local.run import run_pipeline
    from pipeline.testing.samples import small_config, write_sample

    if side == "without":
        beam_fixed_cost.install = lambda: None  # Beam's and dill's own code for this run
    root = Path(out)
    config = small_config(root, write_sample(root / "data", rows=rows))
    started = time.monotonic()
    status, report = run_pipeline(config)
    wall = time.monotonic() - started
    if status != 0 or report is None:
        raise SystemExit(f"the {side} run failed with status {status}")
    return {
        "side": side,
        "wall": wall,
        "components": {c.node_id: c.seconds for c in report.components},
    }


def _child(side: str, rows: int, out: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--role", side, "--rows", str(rows), out],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the {side} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    from _argtypes import whole

    from pipeline.testing.samples import SMALL_SAMPLE_ROWS, TAXI_CSV

    with open(TAXI_CSV, "rb") as f:
        span_rows = sum(1 for _ in f) - 1  # the sample takes every k-th row: at most all of them
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--rows",
        type=whole(50, span_rows),
        default=SMALL_SAMPLE_ROWS,
        help="rows of the taxi span (the test suite's sample by default)",
    )
    p.add_argument("--rounds", type=whole(1), default=2, help="alternated pairs of runs")
    p.add_argument("--role", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("out", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        print(json.dumps(run_one(args.role, args.rows, args.out)))
        return 0

    load = os.getloadavg()
    print(f"load: {load[0]:.2f} {load[1]:.2f} (1, 5 min), {os.cpu_count()} cores, {args.rows} rows")
    print(
        f"{'round':>5} {'side':<8} {'wall':>7} {'Beam sum':>9} "
        + " ".join(f"{c:>13}" for c in BEAM_COMPONENTS)
    )
    walls: dict[str, list[float]] = {s: [] for s in SIDES}
    beam: dict[str, list[float]] = {s: [] for s in SIDES}
    with tempfile.TemporaryDirectory(prefix="beam-fixed-cost-bench-") as tmp:
        for round_ in range(args.rounds):
            order = SIDES if round_ % 2 == 0 else SIDES[::-1]
            for side in order:
                r = _child(side, args.rows, str(Path(tmp, f"{side}-{round_}")))
                seconds = [r["components"].get(c, 0.0) for c in BEAM_COMPONENTS]
                walls[side].append(r["wall"])
                beam[side].append(sum(seconds))
                print(
                    f"{round_ + 1:>5} {side:<8} {r['wall']:6.1f}s {sum(seconds):8.1f}s "
                    + " ".join(f"{s:12.1f}s" for s in seconds),
                    flush=True,
                )
            print(
                f"      round {round_ + 1}, with / without: wall "
                f"x{walls['with'][-1] / walls['without'][-1]:.2f}, Beam components "
                f"x{beam['with'][-1] / beam['without'][-1]:.2f}",
                flush=True,
            )
    for what, figures in (("wall", walls), ("Beam components", beam)):
        med = {s: statistics.median(figures[s]) for s in SIDES}
        print(
            f"median {what}: with {med['with']:.1f}s, without {med['without']:.1f}s, "
            f"with / without x{med['with'] / med['without']:.2f}"
        )
    load = os.getloadavg()
    print(f"load at the end: {load[0]:.2f} {load[1]:.2f} (1, 5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
