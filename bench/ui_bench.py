"""Page render times of the web app (Streamlit AppTest) on a store with many runs.

The store is made the cheapest honest way: one real small pipeline run (400 rows, few steps),
a copy of its metadata.db as the 1-run baseline, then cached re-runs of the same pipeline until
the store holds --runs runs (each a real pipeline_run context with every component's
execution, as after a month of nightly `make retrain` on unchanged data). Every page is
rendered cold (empty st.cache_data) and warm, on the 1-run baseline and on the many-run store,
in this one invocation, and the ratios are printed.

    python bench/ui_bench.py --root /tmp/ui_bench --runs 21
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

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["predict", "runs", "models", "datasets", "serving"]


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


def build_store(root: Path, runs: int):
    """(config, many-run db, 1-run db); reuses what an earlier invocation built."""
    sys.path.insert(0, str(ROOT))
    from runners.local_runner import run_pipeline
    from tests.pipeline_samples import small_config, write_sample

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
    started = time.perf_counter()
    added = 0
    while n < runs:
        code, _ = run_pipeline(config)
        assert code == 0, f"pipeline exit {code}"
        n, added = _count_runs(db), added + 1
    if added:
        print(f"added {added} cached re-runs in {time.perf_counter() - started:.0f}s")
    return config, db, baseline


def render_times(page: str, env: dict[str, str], repeats: int) -> tuple[float, float]:
    """(cold, warm median) seconds for one page."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ.update(env)
    st.cache_data.clear()
    path = str(ROOT / "apps" / "ui" / "pages" / f"{page}.py")

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
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config, db, baseline = build_store(Path(args.root), args.runs)
    grpc_port, rest_port = _free_port(), _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlops.cli", "serve", f"--model_name={config.model_name}",
         f"--model_base_path={config.model_serving_dir}", f"--port={grpc_port}",
         f"--rest_api_port={rest_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/{config.model_name}",
                                       timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        from apps.ui.settings import Settings

        def env(metadata: str) -> dict[str, str]:
            return Settings(metadata=metadata, pipeline_name=config.pipeline_name,
                            model_name=config.model_name, serving_dir=config.model_serving_dir,
                            rest_port=rest_port, grpc_port=grpc_port).to_env()

        stores = {"1 run": baseline, f"{_count_runs(db)} runs": db}
        results = {}
        for label, store in stores.items():
            for page in PAGES:
                results[(label, page)] = render_times(page, env(store), args.repeats)
        many = list(stores)[1]
        print(f"\nload average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print(f"{'page':10} {'1 run cold':>11} {'warm':>7} {many + ' cold':>14} {'warm':>7} "
              f"{'cold ratio':>11} {'warm ratio':>11}")
        for page in PAGES:
            (c1, w1), (cn, wn) = results[("1 run", page)], results[(many, page)]
            print(f"{page:10} {c1:10.2f}s {w1:6.2f}s {cn:13.2f}s {wn:6.2f}s {cn / c1:10.2f}x "
                  f"{wn / w1:10.2f}x")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
