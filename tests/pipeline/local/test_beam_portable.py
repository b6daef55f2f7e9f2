"""The data stages run on Beam's portability framework, the protocol a Flink or Spark job server
speaks: CsvExampleGen -> StatisticsGen -> ... -> Transform of the one create_pipeline, on a small
sample, submitted with --runner=PortableRunner to Beam's own job service started here. Proof that
nothing in the pipeline depends on the DirectRunner; on a cluster the same flags point at
flink-jobserver:8099 or a Spark job server (docs/kubeflow.md)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.testing.samples import small_config, write_sample

# Runs the data stages of the pipeline on the portable runner.
pytestmark = pytest.mark.slow

ROWS = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def job_service(tmp_path):
    """Beam's local job service in its own process; yields (endpoint, log path)."""
    port = _free_port()
    log = tmp_path / "job_service.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apache_beam.runners.portability.local_job_service_main",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "job service did not start"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.timeout(300)
def test_data_stages_run_on_the_portable_runner(job_service, tmp_path):
    from tfx import v1 as tfx
    from tfx.orchestration import pipeline as tfx_pipeline

    from metadata.connection import connection_config_from_url
    from pipeline.pipeline import create_pipeline

    endpoint, log = job_service
    config = small_config(
        tmp_path,
        write_sample(tmp_path / "data", rows=ROWS),
        metadata=str(tmp_path / "metadata.db"),
        beam_args=(
            "--runner=PortableRunner",
            f"--job_endpoint={endpoint}",
            "--environment_type=LOOPBACK",
        ),
    )
    pipeline = create_pipeline(config, connection_config_from_url(config.metadata_connection))
    by_id = {c.id: c for c in pipeline.components}

    # Transform and everything upstream of it, as create_pipeline wires them.
    wanted, frontier = set(), ["Transform"]
    while frontier:
        node = frontier.pop()
        if node not in wanted:
            wanted.add(node)
            frontier.extend(u.id for u in by_id[node].upstream_nodes)
    assert {"CsvExampleGen", "RowCleaner", "StatisticsGen", "Transform"} <= wanted

    tfx.orchestration.LocalDagRunner().run(
        pipeline, run_options=tfx_pipeline.RunOptions(to_nodes=["Transform"])
    )

    # Every Beam stage was a job on the job service, and each finished DONE.
    completed = [ln for ln in log.read_text().splitlines() if "Completed job" in ln]
    beam_stages = {"CsvExampleGen", "RowCleaner", "StatisticsGen", "Transform"}
    assert len(completed) == len(beam_stages), log.read_text()[-3000:]
    assert all("state DONE" in ln for ln in completed)

    root = Path(config.pipeline_root)
    assert {p.name for p in root.iterdir() if not p.name.startswith("_")} == wanted
    assert not (root / "Trainer").exists()

    import tensorflow as tf

    transformed = sorted(root.glob("Transform/transformed_examples/*/Split-*/*.gz"))
    assert {p.parent.name for p in transformed} == {"Split-train", "Split-eval"}
    rows = sum(
        1 for _ in tf.data.TFRecordDataset([str(p) for p in transformed], compression_type="GZIP")
    )
    assert rows == ROWS
    assert list(root.glob("StatisticsGen/statistics/*/Split-train/FeatureStats.pb"))
    assert list(root.glob("Transform/transform_graph/*/transform_fn/saved_model.pb"))
