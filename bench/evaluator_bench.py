"""The Evaluator's eval rows/s: TFMA's path against the batch path (and/or another git ref's
code), same inputs, one invocation.

    .venv/bin/python bench/evaluator_bench.py --run DIR [--rows 100000] [--against main]
        [--evaluators tfma,batch] [--beam-mode in-memory] [--no-baseline]

DIR is a finished pipeline run's output directory (`runners/local_runner.py --output-dir DIR`):
its newest Trainer model and RowCleaner eval split are the inputs. The eval split is repeated
until it holds --rows rows (written once, gzipped TFRecords as ExampleGen writes them). The
model is evaluated as every run after the first evaluates it: against a baseline (a copy of the
same SavedModel at another path, as a pushed model would be), so TFMA runs two models; with
--no-baseline, as a first run. Each code version (`--against REF`, exported with `git archive`,
and this checkout) runs the project's Evaluator executor alone, in its own process, on the same
files: seconds (the executor, not the imports), eval rows/s, peak RSS, then the ratio.
`--evaluators` picks which of this checkout's Evaluator paths run (pipeline/evaluation/
executor.py: `tfma` = TFX's executor, `batch` = the batch path); `--against ''` leaves the other
ref out. Every metric of every slice of the runs is compared with the first run's: the largest
absolute difference is printed.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _argtypes as argtypes  # bench/_argtypes.py: a script's sys.path starts at bench/

ROOT = Path(__file__).resolve().parent.parent


def newest(pattern: str) -> str:
    """The path matching `pattern` with the highest execution id (TFX's <output>/<id>/ dirs)."""
    paths = glob.glob(pattern)
    if not paths:
        raise SystemExit(f"error: nothing matches {pattern}")
    return max(paths, key=lambda p: int(Path(p).name) if Path(p).name.isdigit() else -1)


def repeat_split(source_split: str, rows: int, dest: str) -> int:
    """Write `rows` records to dest/Split-eval by cycling through source_split's records."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(source_split, "*")))
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    out = os.path.join(dest, "Split-eval")
    os.makedirs(out, exist_ok=True)
    shards = 4
    writers = [
        tf.io.TFRecordWriter(os.path.join(out, f"data_tfrecord-{i:05d}-of-{shards:05d}.gz"), "GZIP")
        for i in range(shards)
    ]
    for i in range(rows):
        writers[i % shards].write(records[i % len(records)])
    for writer in writers:
        writer.close()
    return len(records)


def run_evaluator(inputs: dict) -> dict:
    """The project's Evaluator executor on `inputs` (in the process whose PYTHONPATH picks the
    code version): seconds, peak RSS (MiB), the candidate's overall example count."""
    importlib.import_module("modules")  # the Keras-2 switch, before TensorFlow loads
    import tensorflow_model_analysis as tfma
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from pipeline import config as pipeline_config
    from pipeline.evaluation import executor as evaluator_executor
    from pipeline.pipeline import eval_config

    examples = standard_artifacts.Examples()
    examples.uri = inputs["examples"]
    examples.split_names = '["eval"]'
    input_dict = {"examples": [examples]}
    models = (("model", inputs["model"], 1), ("baseline_model", inputs["baseline"], 2))
    for key, uri, artifact_id in models:
        if uri:
            model = standard_artifacts.Model()
            model.uri = uri
            model.id = artifact_id
            input_dict[key] = [model]
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = os.path.join(inputs["out"], "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = os.path.join(inputs["out"], "blessing")
    os.makedirs(blessing.uri, exist_ok=True)
    config = pipeline_config.PipelineConfig()
    exec_properties = {
        "eval_config": proto_utils.proto_to_json(eval_config(config)),
        "example_splits": json.dumps(["eval"]),
    }
    beam_args = (
        pipeline_config.in_memory_beam_args()
        if inputs["beam_mode"] == "in-memory"
        else pipeline_config.multi_processing_beam_args()
    )
    context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args, tmp_dir=inputs["out"])
    started = time.monotonic()
    executor_class = (
        evaluator_executor.BatchEvaluationExecutor
        if inputs["evaluator"] == "batch"
        else evaluator_executor.SkipSelfEvaluationExecutor
    )
    executor_class(context).Do(
        input_dict, {"evaluation": [evaluation], "blessing": [blessing]}, exec_properties
    )
    seconds = time.monotonic() - started
    result = list(tfma.load_metrics(evaluation.uri))
    count = 0.0
    auc = None
    values = {}
    for per_slice in result:
        for key_and_value in per_slice.metric_keys_and_values:
            if key_and_value.value.HasField("double_value"):
                name = f"{per_slice.slice_key}|{key_and_value.key}".replace("\n", " ")
                values[name] = key_and_value.value.double_value.value
        if per_slice.slice_key.single_slice_keys:
            continue
        for key_and_value in per_slice.metric_keys_and_values:
            key = key_and_value.key
            if not key.is_diff and (key.model_name == "candidate" or not inputs["baseline"]):
                if key_and_value.key.name == "example_count":
                    count = key_and_value.value.double_value.value
                if key_and_value.key.name == "auc":
                    auc = key_and_value.value.double_value.value
    return {
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "example_count": count,
        "auc": auc,
        "blessed": os.path.exists(os.path.join(blessing.uri, "BLESSED")),
        "validation_ok": tfma.load_validation_result(evaluation.uri).validation_ok,
        "values": values,
    }


def export_ref(ref: str, dest: Path) -> Path:
    """The project's code at git `ref`, as files under dest (nothing in the checkout changes)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"error: cannot export git ref {ref!r}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def in_subprocess(code_root: Path, inputs: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_root))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(inputs)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=code_root,
    )
    if proc.returncode != 0:
        raise SystemExit(f"evaluator failed ({code_root}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _difference(a: float, b: float) -> float:
    """|a - b|; 0 when both are NaN (TFMA's NaN metrics), inf when only one is."""
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return abs(a - b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a finished pipeline run's --output-dir")
    parser.add_argument("--rows", type=argtypes.whole(1), default=100_000)
    parser.add_argument("--against", default="main", help="git ref to compare with ('' = none)")
    parser.add_argument(
        "--beam-mode", choices=("in-memory", "multi-processing"), default="in-memory"
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--evaluators",
        type=argtypes.names(("tfma", "batch")),
        default="tfma,batch",
        help="this checkout's Evaluator paths to run, comma-separated: tfma, batch",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_evaluator(json.loads(args.child))))
        return 0
    if not args.run:
        parser.error("--run DIR is required")
    root = os.path.join(args.run, "*")
    model = newest(os.path.join(root, "Trainer", "model", "*"))
    cleaned = newest(os.path.join(root, "RowCleaner", "cleaned_examples", "*"))
    load = os.getloadavg()
    print(f"load: {load[0]:.2f} {load[1]:.2f} (1, 5 min), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="evaluator_bench_") as tmp:
        distinct = repeat_split(os.path.join(cleaned, "Split-eval"), args.rows, f"{tmp}/examples")
        baseline = ""
        if not args.no_baseline:
            baseline = f"{tmp}/baseline_model"
            shutil.copytree(model, baseline)
        print(
            f"{args.rows} eval rows ({distinct} distinct, repeated), "
            f"{'with' if baseline else 'without'} a baseline model, Beam {args.beam_mode}"
        )
        versions = [
            (f"this checkout {evaluator}", ROOT, evaluator) for evaluator in args.evaluators
        ]
        if args.against:
            code = export_ref(args.against, Path(tmp, "code"))
            versions.insert(0, (f"{args.against} tfma", code, "tfma"))
        results = {}
        for name, code_root, evaluator in versions:
            inputs = {
                "examples": f"{tmp}/examples",
                "model": model,
                "baseline": baseline,
                "out": f"{tmp}/out-{len(results)}",
                "beam_mode": args.beam_mode,
                "evaluator": evaluator,
            }
            r = results[name] = in_subprocess(code_root, inputs)
            print(
                f"  {name:<20} {r['seconds']:7.1f} s {args.rows / r['seconds']:8.0f} eval rows/s "
                f"peak RSS {r['peak_rss_mib']:5.0f} MiB  example_count {r['example_count']:.0f} "
                f"AUC {r['auc']} blessed {r['blessed']} validation_ok {r['validation_ok']}"
            )
    names = list(results)
    for name in names[1:]:
        before, after = results[names[0]], results[name]
        common = before["values"].keys() & after["values"].keys()
        diff = max(
            (_difference(before["values"][k], after["values"][k]) for k in common),
            default=float("nan"),
        )
        print(
            f"{name} / {names[0]}: time x{after['seconds'] / before['seconds']:.2f}, "
            f"eval rows/s x{before['seconds'] / after['seconds']:.2f}, "
            f"peak RSS x{after['peak_rss_mib'] / before['peak_rss_mib']:.2f}; "
            f"{len(common)} metric values in common ({len(before['values'])} vs "
            f"{len(after['values'])}), max |difference| {diff:.3g}"
        )
    load = os.getloadavg()
    print(f"load after: {load[0]:.2f} {load[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
