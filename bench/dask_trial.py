"""Which of the pipeline's data stages run on Beam's DaskRunner, and how fast against DirectRunner.

    .venv/bin/python bench/dask_trial.py [--rows 100000] [--workers 2] [--keep DIR]

Needs dask (not a project dependency: `pip install -c constraints.txt dask==2024.8.0
distributed==2024.8.0`, cloudpickle stays 2.2.1). Starts a
local dask.distributed cluster (one process per worker, one thread each), generates a
taxi-like span (bench/generate_rows.py), then runs the same three stages -- CsvExampleGen,
StatisticsGen, Transform (each a pipeline of its own with the earlier stages cached, so one
failure does not hide the next) -- on the DaskRunner and on Beam's in-memory DirectRunner, and
prints each stage's seconds (from ML Metadata) or its error.

Two workarounds are built in: every Beam component gets `beam.Pipeline(runner=DaskRunner(),
options=--dask_client_address only)`, because with `--runner=...DaskRunner` in
beam_pipeline_args Beam 2.60 passes every non-default option (`runner`, TFX's `labels`) to
`distributed.Client(**kwargs)`, which rejects them; and Beam 2.60's result waits with
`client.wait_for_workers(timeout=...)`, which distributed 2024.8 rejects (`n_workers` became
required): it is given n_workers=1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Run as a script (`python bench/<this>.py`): bench/ is first on sys.path, so the sibling module
# imports by its own name (the project's packages come from the editable install).
from generate_rows import write_span

import modules  # noqa: F401 - the Keras-2 switch, before TensorFlow loads
from pipeline.config import PROJECT_ROOT, in_memory_beam_args

STAGES = ("CsvExampleGen", "StatisticsGen", "Transform")


def stage_pipeline(name: str, root: Path, data: Path, upto: str, beam_args: list[str]):
    """CsvExampleGen [-> StatisticsGen | ImportSchemaGen -> Transform], cache on."""
    from tfx import v1 as tfx
    from tfx.orchestration import metadata
    from tfx.proto import example_gen_pb2

    from modules import preprocessing
    from pipeline.config import PipelineConfig

    example_gen = tfx.components.CsvExampleGen(
        input_base=str(data),
        input_config=example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(
                    name="single_split", pattern=PipelineConfig().input_pattern
                )
            ]
        ),
    )
    components = [example_gen]
    if upto == "StatisticsGen":
        components.append(tfx.components.StatisticsGen(examples=example_gen.outputs["examples"]))
    elif upto == "Transform":
        schema = tfx.components.ImportSchemaGen(
            schema_file=str(PROJECT_ROOT / "schema" / "schema.pbtxt")
        )
        transform = tfx.components.Transform(
            examples=example_gen.outputs["examples"],
            schema=schema.outputs["schema"],
            preprocessing_fn=f"{preprocessing.__name__}.preprocessing_fn",
        )
        components += [schema, transform]
    return tfx.dsl.Pipeline(
        pipeline_name=name,
        pipeline_root=str(root / "pipeline"),
        components=components,
        enable_cache=True,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(root / "metadata.db")
        ),
        beam_pipeline_args=beam_args,
    )


# Executor module (tfx.components.<this>...) of each stage.
EXECUTOR_PACKAGE = {
    "CsvExampleGen": "example_gen",
    "StatisticsGen": "statistics_gen",
    "Transform": "transform",
}


def use_dask(address: str | None, stage: str = "") -> None:
    """Point the TFX Beam executor of `stage` at the DaskRunner on `address` (None: undo);
    the other stages keep the DirectRunner."""
    from tfx.dsl.components.base import base_beam_executor

    cls = base_beam_executor.BaseBeamExecutor
    if address is None:
        cls._make_beam_pipeline = cls._original_make_beam_pipeline
        return
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask.dask_runner import DaskRunner
    from dask import distributed

    if not hasattr(distributed.Client, "_original_wait_for_workers"):
        distributed.Client._original_wait_for_workers = distributed.Client.wait_for_workers
        distributed.Client.wait_for_workers = lambda client, n_workers=1, timeout=None: (
            client._original_wait_for_workers(n_workers, timeout=timeout)
        )
    if not hasattr(cls, "_original_make_beam_pipeline"):
        cls._original_make_beam_pipeline = cls._make_beam_pipeline

    original = cls._original_make_beam_pipeline

    def make(self):
        if f".{EXECUTOR_PACKAGE[stage]}." not in type(self).__module__:
            return original(self)
        return beam.Pipeline(
            runner=DaskRunner(), options=PipelineOptions([f"--dask_client_address={address}"])
        )

    cls._make_beam_pipeline = make


def run_stages(label: str, root: Path, data: Path, address: str | None) -> dict[str, str]:
    """Each stage in turn (on Dask when `address`), the stages before it cached."""
    from tfx import v1 as tfx

    from metadata.store import open_store

    results = {}
    for stage in STAGES:
        started = time.monotonic()
        if address:
            use_dask(address, stage)
        try:
            tfx.orchestration.LocalDagRunner().run(
                stage_pipeline("trial", root, data, stage, in_memory_beam_args())
            )
            run = open_store(str(root / "metadata.db")).latest_run("trial")
            execution = run.execution(stage) if run else None
            secs = execution.seconds if execution else time.monotonic() - started
            results[stage] = f"ok {secs:7.1f} s"
        except Exception as e:  # noqa: BLE001 - reported: which stage fails and why is the result
            tb = traceback.extract_tb(e.__traceback__)[-1]
            where = f"{Path(tb.filename).name}:{tb.lineno}"
            results[stage] = f"FAILED after {time.monotonic() - started:.1f} s: "
            results[stage] += f"{type(e).__name__}: {str(e)[:200]} (at {where})"
        finally:
            if address:
                use_dask(None)
        print(f"  {label:<12} {stage:<14} {results[stage]}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--keep", help="directory for data and outputs (default: a temp dir)")
    args = p.parse_args(argv)
    try:
        from dask import distributed
    except ImportError:
        print("error: needs dask==2024.8.0 and distributed==2024.8.0", file=sys.stderr)
        return 2
    base = Path(args.keep or tempfile.mkdtemp(prefix="dask_trial_"))
    data = base / "data"
    if not (data / "span-1" / "data.csv").exists():
        write_span(data, args.rows)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"{args.rows:,} rows, load average {os.getloadavg()[0]:.1f}", flush=True)
    with distributed.LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        run_stages("DaskRunner", base / "dask", data, cluster.scheduler_address)
    run_stages("DirectRunner", base / "direct", data, None)
    print(f"load average {os.getloadavg()[0]:.1f}; outputs {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
