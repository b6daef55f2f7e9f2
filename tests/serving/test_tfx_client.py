"""TF Serving compatibility held: TFX's own chicago_taxi_client, run unchanged as a subprocess,
against `mlops serve` on free ports with the project's curated schema/schema.pbtxt.

The client builds its tf.Example coder from the schema and reads every schema feature from the
CSV, so the curated schema must describe the raw data exactly (the multi-source `source` column
is added elsewhere: pipeline/source_schema.py). It posts b64 tf.Examples to
/v1/models/chicago_taxi:predict, TF Serving's REST `instances` form.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tfx

from tests.paths import PROJECT_ROOT
from tests.serving_models import ServerProcess, build_model

CLIENT = Path(tfx.__file__).parent / "examples/chicago_taxi_pipeline/serving/chicago_taxi_client.py"
SCHEMA = PROJECT_ROOT / "schema" / "schema.pbtxt"
ROWS = 200  # the client computes TFDV statistics of the whole file: a head of span 1 is enough


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("client") / "chicago_taxi"
    build_model(base / "1")
    server = ServerProcess("--model_name=chicago_taxi", f"--model_base_path={base}").wait_ready()
    yield server
    server.stop()


def test_tfx_chicago_taxi_client_runs_unchanged_against_the_server(server, tmp_path):
    assert CLIENT.is_file()
    lines = (PROJECT_ROOT / "data/taxi/span-1/data.csv").read_text().splitlines()[: ROWS + 1]
    examples = tmp_path / "examples.csv"
    examples.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [
            sys.executable,
            str(CLIENT),
            f"--server=127.0.0.1:{server.rest_port}",
            f"--examples_file={examples}",
            f"--schema_file={SCHEMA}",
            "--num_examples=3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    start = result.stdout.index("{")
    predictions = json.loads(result.stdout[start:])["predictions"]
    assert len(predictions) == 3
    assert all(len(p) == 1 and 0.0 <= p[0] <= 1.0 for p in predictions)
