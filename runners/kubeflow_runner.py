"""Compile the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines, and optionally submit it.

    python runners/kubeflow_runner.py                       # compile with the defaults, print where
    python runners/kubeflow_runner.py --image REG/tfx-taxi-pipeline:TAG \\
        --pipeline-root gs://BUCKET/tfx --data-root gs://BUCKET/data/taxi \\
        --serving-model-dir gs://BUCKET/serving_model/taxi \\
        --beam-arg=--runner=DataflowRunner --beam-arg=--project=P --beam-arg=--region=R \\
        --beam-arg=--temp_location=gs://BUCKET/tmp
    python runners/kubeflow_runner.py ... --submit --endpoint http://localhost:8080

The very same `create_pipeline(config)` as the local runner, with the same pipeline flags
(pipeline/flags.py); only the places differ: artifacts under a bucket, executors in the pipeline
image (deploy/pipeline/Dockerfile), the cluster's ML Metadata. Everything is checked before
compiling (pipeline/kubeflow/), so a typo fails here rather than an hour into a cluster run.
Exit status: 0 compiled (and submitted), 2 on any problem (one line on stderr).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

from cli_support import Exit
from pipeline import kubeflow
from pipeline.ingest.sources import SourceError
from pipeline.kubeflow import flags


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, compile (and submit)."""
    # Google client libraries warn about Python support dates on import; not actionable here.
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = flags.parser(__doc__)
    args = parser.parse_args(argv)
    flags.check_args(parser, args)
    try:
        kcfg = flags.kubeflow_config(args)
        path = kubeflow.compile_pipeline(kcfg, args.output)
    except (kubeflow.KubeflowConfigError, SourceError) as e:
        print(e, file=sys.stderr)
        return Exit.FAILED
    print(f"Pipeline spec: {path}")
    print(f"  image {kcfg.image}, pipeline root {kcfg.pipeline_root}/{kcfg.pipeline_name}")
    if not args.submit:
        return Exit.OK
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
        return Exit.FAILED
    print(f"Submitted run {run.run_id} to {args.endpoint} (experiment {args.experiment})")
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
