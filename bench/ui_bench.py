"""Page render times of the web app (Streamlit AppTest) on a store with many runs.

The store is made the cheapest honest way: one real small pipeline run (400 rows, few steps),
a copy of its metadata.db as the 1-run baseline, then copies of the recorded runs until the
store holds --runs runs: each copy is a new pipeline_run context (child of the pipeline
context) associated with the same executions and attributed the same artifacts, which is what
a cached re-run of unchanged data records, so the pages read as many executions, events and
artifact payloads per run as after a month of nightly `make retrain`. (Real cached re-runs
cost 1-2 minutes each on a loaded 2-core machine; copies take milliseconds.)

    python -m bench.ui_bench --root /tmp/ui_bench --runs 21   # from the repository root
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import _argtypes as argtypes  # bench/_argtypes.py: a script's sys.path starts at bench/

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["predict", "runs", "models", "data", "serving"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _count_runs(db: str) -> int:
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = db
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return len(metadata_store.MetadataStore(config).get_contexts_by_type("pipeline_run"))


def copy_runs(db: str, count: int) -> None:
    """Add `count` pipeline_run contexts, round-robin copies of the recorded runs."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2

    config = mlmd_pb2.ConnectionConfig()
    config.sqlite.filename_uri = db
    store = metadata_store.MetadataStore(config)
    originals = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    for i in range(count):
        run = originals[i % len(originals)]
        copy = mlmd_pb2.Context(type_id=run.type_id, name=f"{run.name}-copy{i + 1}")
        copy.properties.MergeFrom(run.properties)
        copy.custom_properties.MergeFrom(run.custom_properties)
        [copy_id] = store.put_contexts([copy])
        store.put_parent_contexts(
            [
                mlmd_pb2.ParentContext(child_id=copy_id, parent_id=p.id)
                for p in store.get_parent_contexts_by_context(run.id)
            ]
        )
        executions = store.get_executions_by_context(run.id)
        artifacts = store.get_artifacts_by_context(run.id)
        store.put_attributions_and_associations(
            [mlmd_pb2.Attribution(context_id=copy_id, artifact_id=a.id) for a in artifacts],
            [mlmd_pb2.Association(context_id=copy_id, execution_id=e.id) for e in executions],
        )


def build_store(root: Path, runs: int):
    """(config, many-run db, 1-run db); reuses what an earlier invocation built."""
    from pipeline.local.run import run_pipeline
    from pipeline.testing.samples import small_config, write_sample

    data_root = root / "data"
    if not data_root.exists():
        write_sample(data_root)
    config = small_config(root, data_root)
    db = config.metadata_connection
    baseline = str(Path(db).with_name("metadata-1run.db"))
    if not os.path.exists(baseline):
        code, _ = run_pipeline(config)
        assert code == 0, f"pipeline exit {code}"
        shutil.copyfile(db, baseline)
    n = _count_runs(db)
    if n < runs:
        copy_runs(db, runs - n)
        print(f"copied runs: {n} -> {_count_runs(db)}")
    return config, db, baseline


def render_times(page: str, env: dict[str, str], repeats: int) -> tuple[float, float]:
    """(cold, warm median) seconds for one page."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ.update(env)
    st.cache_data.clear()
    path = str(ROOT / "apps" / "ui" / "views" / f"{page}.py")

    def once() -> float:
        at = AppTest.from_file(path, default_timeout=600)
        started = time.perf_counter()
        at.run()
        elapsed = time.perf_counter() - started
        if at.exception:
            raise RuntimeError(f"{page}: {at.exception[0].value}")
        return elapsed

    cold = once()
    warm = statistics.median(once() for _ in range(repeats))
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/ui_bench")
    parser.add_argument("--runs", type=argtypes.whole(1), default=21)
    parser.add_argument("--repeats", type=argtypes.whole(1), default=3)
    args = parser.parse_args()
    config, db, baseline = build_store(Path(args.root), args.runs)
    grpc_port, rest_port = _free_port(), _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlops.cli",
            "serve",
            f"--model_name={config.model_name}",
            f"--model_base_path={config.model_serving_dir}",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 600  # TF import + model load; slow on a loaded machine
        while True:
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{rest_port}/v1/models/{config.model_name}", timeout=2
                )
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        from apps.ui.settings import Settings

        def env(metadata: str) -> dict[str, str]:
            return Settings(
                metadata=metadata,
                pipeline_name=config.pipeline_name,
                model_name=config.model_name,
                serving_dir=config.model_serving_dir,
                rest_port=rest_port,
                grpc_port=grpc_port,
            ).to_env()

        stores = {"1 run": baseline, f"{_count_runs(db)} runs": db}
        results = {}
        for label, store in stores.items():
            for page in PAGES:
                results[(label, page)] = render_times(page, env(store), args.repeats)
        many = list(stores)[1]
        print(f"\nload average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print(
            f"{'page':10} {'1 run cold':>11} {'warm':>7} {many + ' cold':>14} {'warm':>7} "
            f"{'cold ratio':>11} {'warm ratio':>11}"
        )
        for page in PAGES:
            (c1, w1), (cn, wn) = results[("1 run", page)], results[(many, page)]
            print(
                f"{page:10} {c1:10.2f}s {w1:6.2f}s {cn:13.2f}s {wn:6.2f}s {cn / c1:10.2f}x "
                f"{wn / w1:10.2f}x"
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
