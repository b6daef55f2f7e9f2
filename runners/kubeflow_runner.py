"""Compile the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines, and optionally submit it.

    python runners/kubeflow_runner.py                       # compile with the defaults, print where
    python runners/kubeflow_runner.py --image REG/tfx-taxi-pipeline:TAG \\
        --pipeline-root gs://BUCKET/tfx --data-root gs://BUCKET/data/taxi \\
        --serving-model-dir gs://BUCKET/serving_model/taxi \\
        --beam-arg=--runner=DataflowRunner --beam-arg=--project=P --beam-arg=--region=R \\
        --beam-arg=--temp_location=gs://BUCKET/tmp
    python runners/kubeflow_runner.py ... --submit --endpoint http://localhost:8080

It builds the very same `create_pipeline(config)` as the local runner; only the places differ:
artifacts live under a bucket, the executors run in the pipeline image (deploy/pipeline/Dockerfile,
`make image`), and ML Metadata is the cluster's. Everything is checked before compiling, so a typo
in an image reference or bucket fails here rather than an hour into a cluster run. The work is
done by pipeline/kubeflow/; this file only turns flags into a KubeflowConfig.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from collections.abc import Sequence

from pipeline import kubeflow
from pipeline.config import MODULES_DIR, EvalThresholds, span_count
from pipeline.ingest.sources import SourceError, parse_source_flag

EXIT_OK, EXIT_FAILED = 0, 2


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return key, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The runner's flags; defaults come from KubeflowConfig (and its PipelineConfig)."""
    d = kubeflow.KubeflowConfig()
    t = d.pipeline.thresholds
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add = p.add_argument
    add("--pipeline-name", default=d.pipeline_name)
    add("--image", default=d.image, help="pipeline image (make image IMAGE=...)")
    add("--pipeline-root", default=d.pipeline_root, help="gs://... or s3://... (MinIO)")
    add("--data-root", default=d.data_root, help="holds span-N/*.csv (bucket or image path)")
    add("--schema-path", default=d.schema_path)
    add(
        "--serving-model-dir",
        default=d.serving_model_dir,
        help="Pusher destination = TF Serving's model base path",
    )
    add(
        "--module-dir",
        default=None,
        help=f"where modules/*.py are (default {kubeflow.IMAGE_PROJECT_ROOT}/modules in the image)",
    )
    add(
        "--package-user-modules",
        action="store_true",
        help="wheel-package local modules/ into the pipeline root at compile time",
    )
    add(
        "--beam-arg",
        action="append",
        default=None,
        help="Beam pipeline arg, repeatable; replaces the default DirectRunner args",
    )
    add(
        "--resources",
        action="append",
        default=[],
        type=_key_value,
        metavar="NODE=CPU,MEM",
        help="e.g. Trainer=4,16Gi (default for the rest: --default-resources)",
    )
    add("--default-resources", default=f"{d.default_resources.cpu},{d.default_resources.memory}")
    add(
        "--env",
        action="append",
        default=[],
        type=_key_value,
        metavar="NAME=VALUE",
        help="environment of every step, e.g. S3_ENDPOINT=minio-service.kubeflow:9000",
    )
    add(
        "--source",
        action="append",
        default=[],
        metavar="KIND:LOCATION",
        help="read these instead of --data-root (docs/sources.md), e.g. "
        "'bigquery:SELECT ... FROM `project.dataset.table`' (BigQueryExampleGen)",
    )
    add("--train-steps", type=int, default=d.train_steps)
    add("--eval-steps", type=int, default=d.eval_steps)
    add("--tuner-trials", type=int, default=d.tuner_trials)
    add("--tuner-train-steps", type=int, default=d.tuner_train_steps)
    add("--tuner-eval-steps", type=int, default=d.tuner_eval_steps)
    add("--min-auc", type=float, default=t.min_auc, help="Evaluator: bless at AUC >= this")
    add("--min-accuracy", type=float, default=t.min_accuracy)
    add(
        "--min-auc-gain",
        type=float,
        default=t.min_auc_gain,
        help="Evaluator: AUC gain over the latest blessed model needed to bless",
    )
    add(
        "--train-spans",
        type=span_count,
        default=d.train_spans,
        metavar="N",
        help="spans to train on (1: the newest; N > 1 is local-runner only, see docs/kubeflow.md)",
    )
    add("--skip-tuning", action="store_true")
    add("--infer-schema", action="store_true")
    add("--no-cache", action="store_true")
    add("--output", default=kubeflow.DEFAULT_SPEC_PATH, help=".yaml (KFP) or .json (PipelineJob)")
    add("--submit", action="store_true", help="upload the spec and start a run")
    add("--endpoint", help="KFP API, e.g. http://localhost:8080 (port-forwarded ml-pipeline-ui)")
    add("--namespace", default=None, help="multi-user KFP: the profile namespace")
    add("--experiment", default="taxi")
    add("--run-name", default=None)
    add("--service-account", default=None)
    add(
        "--param",
        action="append",
        default=[],
        type=_key_value,
        metavar="NAME=VALUE",
        help=f"runtime parameter for the submitted run ({', '.join(kubeflow.RUNTIME_PARAMETERS)})",
    )
    args = p.parse_args(argv)
    if args.submit and not args.endpoint:
        p.error("--submit needs --endpoint URL")
    unknown = {k for k, _ in args.param} - set(kubeflow.RUNTIME_PARAMETERS)
    if unknown:
        p.error(
            f"unknown runtime parameter(s) {sorted(unknown)}; "
            f"have {list(kubeflow.RUNTIME_PARAMETERS)}"
        )
    return args


def build_config(args: argparse.Namespace) -> kubeflow.KubeflowConfig:
    """The KubeflowConfig the flags describe."""
    defaults = kubeflow.KubeflowConfig()
    modules = {}
    if args.module_dir or args.package_user_modules:
        module_dir = args.module_dir or str(MODULES_DIR)
        modules = {
            f"{n}_module": os.path.join(module_dir, f"{n}.py")
            for n in ("preprocessing", "trainer", "tuner")
        }
    pipeline = dataclasses.replace(
        defaults.pipeline,
        pipeline_name=args.pipeline_name,
        output_dir=args.pipeline_root,
        data_root=args.data_root,
        schema_path=args.schema_path,
        serving_model_dir=args.serving_model_dir,
        beam_args=tuple(args.beam_arg)
        if args.beam_arg is not None
        else defaults.pipeline.beam_args,
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        tuner_trials=args.tuner_trials,
        tuner_train_steps=args.tuner_train_steps,
        tuner_eval_steps=args.tuner_eval_steps,
        thresholds=EvalThresholds(
            min_auc=args.min_auc, min_accuracy=args.min_accuracy, min_auc_gain=args.min_auc_gain
        ),
        skip_tuning=args.skip_tuning,
        train_spans=args.train_spans,
        infer_schema=args.infer_schema,
        enable_cache=not args.no_cache,
        sources=tuple(parse_source_flag(text) for text in args.source),
        **modules,
    )
    resources = dict(defaults.resources)
    resources.update({k: kubeflow.Resources.parse(v) for k, v in args.resources})
    return kubeflow.KubeflowConfig(
        pipeline=pipeline,
        image=args.image,
        default_resources=kubeflow.Resources.parse(args.default_resources),
        resources=resources,
        env=dict(args.env),
        package_user_modules=args.package_user_modules,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, compile (and submit); one line on stderr and exit 2 on any problem."""
    # Google client libraries warn about Python support dates on import; not actionable here.
    warnings.filterwarnings("ignore", category=FutureWarning)
    args = parse_args(argv)
    try:
        kcfg = build_config(args)
        path = kubeflow.compile_pipeline(kcfg, args.output)
    except (kubeflow.KubeflowConfigError, SourceError) as e:
        print(e, file=sys.stderr)
        return EXIT_FAILED
    print(f"Pipeline spec: {path}")
    print(f"  image {kcfg.image}, pipeline root {kcfg.pipeline_root}/{kcfg.pipeline_name}")
    if args.submit:
        try:
            run = kubeflow.submit(
                path,
                args.endpoint,
                kcfg,
                experiment=args.experiment,
                run_name=args.run_name,
                params=dict(args.param),
                namespace=args.namespace,
                service_account=args.service_account,
            )
        except kubeflow.SubmissionError as e:
            print(f"Error: {e}", file=sys.stderr)
            return EXIT_FAILED
        print(f"Submitted run {run.run_id} to {args.endpoint} (experiment {args.experiment})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
