"""Pipeline wall time, peak memory and model quality against the stock TFX taxi template.

    .venv/bin/python bench/pipeline_bench.py [--keep DIR] [--multi-processing]
        [--scale-rows 100000,1000000,5000000]

One invocation runs, each in a fresh subprocess (so peak RSS is that run's own):
  1. the anchor: the stock TFX taxi template (`tfx template copy --model=taxi`, every step
     enabled, its defaults) on the same CSV, cold;
  2. this project's default run, cold;
  3. this project re-run with unchanged data and code (the up-to-date check stops it);
  3b. the same re-run through TFX and its cache (`--always-run`);
  4. this project after touching one file in modules/ (all of it runs from a copy of the
     project's code, so the checkout itself is never modified);
  (5. with --multi-processing: this project cold with Beam's multi-processing mode.)
Then it scores each run's trained model on the same rows -- the eval rows held out by both the
template's and this project's ExampleGen -- and prints wall, peak RSS, AUC, accuracy and ratios
against the template's cold run. With --scale-rows, the same invocation then runs the pipeline
(--skip-tuning, cold, Beam mode auto) on generated spans of those sizes (bench/scale_bench.py):
wall, peak RSS, per-component seconds and rows/s, the Evaluator's eval rows/s, against issue
26's targets.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import modules  # noqa: F401 - sets the Keras-2 switch, which the template's own run needs too
from pipeline.config import run_source_dirs
from pipeline.local.up_to_date import UP_TO_DATE

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "taxi"
TFX_CLI = Path(sys.executable).with_name("tfx")


def copy_code(dest: Path) -> Path:
    """A private copy of what a run reads from the checkout, so a run can edit it."""
    for source in run_source_dirs(ROOT):
        shutil.copytree(source, dest / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def run_timed(cmd: list[str], log_path: Path, cwd: Path | None = None, env=None):
    """(wall seconds, peak RSS MiB, exit status) of one subprocess, output into log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        # wait4 gives this child's own resource usage (its peak RSS, not the maximum so far).
        _, raw_status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    status = os.waitstatus_to_exitcode(raw_status)
    if status != 0:
        print(log_path.read_text()[-3000:], file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, status


def prepare_template(base: Path) -> Path:
    """Copy the stock taxi template and enable every step the template leaves commented out."""
    dest = base / "template"
    subprocess.run(
        [
            str(TFX_CLI),
            "template",
            "copy",
            "--model=taxi",
            "--pipeline_name=taxi_template",
            f"--destination_path={dest}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=base,
    )
    pipeline_py = dest / "pipeline" / "pipeline.py"
    text = pipeline_py.read_text()
    # The template marks each optional step with a commented-out `components.append(x)`: enable all.
    text = re.sub(r"^(\s*)# (components\.append\(\w+\))", r"\1\2", text, flags=re.M)
    pipeline_py.write_text(text)
    return dest


def component_seconds(log_text: str) -> dict[str, float]:
    """Per-component seconds from the runner's summary table."""
    out = {}
    for m in re.finditer(
        r"^  (\w+)\s+(COMPLETE|CACHED|FAILED|RUNNING)\s+([\d.]+)$", log_text, re.M
    ):
        out[m.group(1)] = float(m.group(3))
    return out


def _newest(pattern: str) -> str | None:
    paths = glob.glob(pattern)
    return max(paths, key=os.path.getmtime) if paths else None


def _eval_records(examples_dir: str) -> set[bytes]:
    """The eval split's examples in one canonical serialization (features in key order): the
    template's ExampleGen and this project's column-wise one write the same examples with their
    features in different orders, so raw bytes would never match."""
    import tensorflow as tf

    files = glob.glob(os.path.join(examples_dir, "Split-eval", "*"))
    return {
        tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    }


def score(models: dict[str, str], eval_sets: list[str]) -> dict[str, tuple[float, float, int]]:
    """{run: (AUC, accuracy, rows)} on the eval rows every ExampleGen in eval_sets held out."""
    import numpy as np
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    common = set.intersection(*(_eval_records(d) for d in eval_sets))
    rows = sorted(common)
    labels = []
    for raw in rows:
        ex = tf.train.Example.FromString(raw).features.feature
        tips = ex["tips"].float_list.value[0] if ex["tips"].float_list.value else 0.0
        fare = ex["fare"].float_list.value[0] if ex["fare"].float_list.value else 0.0
        labels.append(int(tips > 0.2 * fare))
    labels = np.array(labels)
    results = {}
    for name, model_dir in models.items():
        if not model_dir:
            continue
        fn = tf.saved_model.load(model_dir).signatures["serving_default"]
        key = fn.structured_input_signature[1]
        (arg,) = key
        preds = []
        for i in range(0, len(rows), 512):
            out = fn(**{arg: tf.constant(rows[i : i + 512])})
            preds.append(next(iter(out.values())).numpy().reshape(-1))
        p = np.concatenate(preds)
        results[name] = (roc_auc_score(labels, p), float(((p > 0.5) == labels).mean()), len(rows))
    return results


def main() -> int:
    # Here, not at the top: tests import this file as a module, where bench/ is not on sys.path
    # (run as `python bench/<this>.py`, it is first).
    import _argtypes as argtypes

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--keep", help="directory for the runs' outputs (default: a temp dir)")
    p.add_argument("--multi-processing", action="store_true", help="also a multi-processing run")
    p.add_argument("--skip-template", action="store_true", help="only this project's runs")
    p.add_argument("--skip-small", action="store_true", help="only the --scale-rows runs")
    p.add_argument(
        "--scale-rows",
        type=argtypes.row_counts,
        default=None,
        help="then the scale runs at these row counts",
    )
    args = p.parse_args()
    base = Path(args.keep or tempfile.mkdtemp(prefix="pipeline_bench_"))
    base.mkdir(parents=True, exist_ok=True)
    status = 0 if args.skip_small else small_runs(args, base)
    if args.scale_rows:
        # Run as a script, bench/ is first on sys.path: the sibling module imports by name.
        import scale_bench

        rows = ",".join(map(str, args.scale_rows))
        scale_args = ["--rows", rows, "--modes", "auto", "--keep", str(base / "scale")]
        status = max(status, scale_bench.main(scale_args))
    return status


def small_runs(args: argparse.Namespace, base: Path) -> int:
    """The template and this project on the default data: the cold, re-run and edit ratios."""
    env = dict(os.environ)  # carries the Keras-2 switch `import modules` set
    load_before = os.getloadavg()
    results: list[tuple[str, float, float, int]] = []
    models: dict[str, str] = {}
    eval_sets: list[str] = []

    def record(name, wall, peak, status):
        results.append((name, wall, peak, status))
        print(f"{name:<34} {wall:7.1f} s  peak RSS {peak:6.0f} MiB  exit {status}", flush=True)

    if not args.skip_template:
        tpl = prepare_template(base)
        tpl_env = dict(env, PYTHONPATH=str(tpl))
        record(
            "template cold",
            *run_timed(
                [sys.executable, "local_runner.py"], base / "template.log", cwd=tpl, env=tpl_env
            ),
        )
        tpl_root = tpl / "tfx_pipeline_output" / "taxi_template"
        models["template cold"] = _newest(
            str(tpl_root / "Trainer" / "model" / "*" / "Format-Serving")
        )
        eval_sets.append(_newest(str(tpl_root / "CsvExampleGen" / "examples" / "*")))

    # This project, from a private copy of its code: touching a module changes nothing in git.
    code = copy_code(base / "project")
    out = base / "project_out"
    project_env = dict(env, PYTHONPATH=str(code))
    mods = code / "modules"
    cmd = [
        sys.executable,
        str(code / "runners" / "local_runner.py"),
        "--output-dir",
        str(out),
        "--serving-model-dir",
        str(out / "serving_model" / "taxi"),
        "--data-root",
        str(DATA),
    ]
    logs = {}
    for name, prepare in (
        ("project cold", None),
        ("project re-run, unchanged", None),
        ("project re-run through TFX's cache", None),
        ("project after touching modules/", lambda: (mods / "model.py").open("a").write("\n")),
    ):
        if prepare:
            prepare()
        logs[name] = base / f"{re.sub(r'[^a-z]+', '_', name.split(',')[0])}.log"
        # The second re-run goes through TFX (its cache) although nothing changed.
        flags = ["--always-run"] if "TFX's cache" in name else []
        record(name, *run_timed(cmd + flags, logs[name], env=project_env))
        models[name] = _newest(
            str(out / "taxi_pipeline" / "Trainer" / "model" / "*" / "Format-Serving")
        )
    eval_sets.append(_newest(str(out / "taxi_pipeline" / "CsvExampleGen" / "examples" / "*")))
    if args.multi_processing:
        mp = base / "project_mp"
        record(
            "project cold, multi-processing",
            *run_timed(
                [
                    *cmd[:3],
                    str(mp),
                    "--serving-model-dir",
                    str(mp / "sm"),
                    *cmd[6:],
                    "--multi-processing",
                ],
                base / "multi.log",
                env=project_env,
            ),
        )
    load_after = os.getloadavg()

    print("\nper component (seconds, from each run's summary):")
    for name, log in logs.items():
        text = log.read_text()
        if UP_TO_DATE in text:  # it printed the previous run's summary: nothing of its own
            print(f"  {name}: nothing ran (up to date)")
            continue
        secs = component_seconds(text)
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in secs.items()))

    quality = score({k: v for k, v in models.items() if "re-run" not in k}, eval_sets)
    n = next(iter(quality.values()))[2] if quality else 0
    print(f"\nmodel quality on the {n} eval rows every run held out:")
    for name, (auc, acc, _) in quality.items():
        print(f"  {name:<34} AUC {auc:.4f}  accuracy {acc:.4f}")

    anchor = results[0][1]
    print(f"\nload average before {load_before[0]:.1f}, after {load_after[0]:.1f} (2 cores)")
    print(f"\n{'run':<34} {'seconds':>8} {'peak MiB':>9}  vs {results[0][0]}")
    for name, wall, peak, status in results:
        flag = "" if status == 0 else "  FAILED"
        print(f"{name:<34} {wall:8.1f} {peak:9.0f}  {wall / anchor:5.2f}x{flag}")
    print(f"\noutputs: {base}")
    return 0 if all(r[3] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
