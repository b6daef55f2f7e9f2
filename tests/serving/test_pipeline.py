"""The pipeline's pushed model, served and queried the way a user would: raw CSV rows through
`mlops predict`, over both protocols, with both encodings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from serving.repository import list_versions
from tests import serving_models as sm
from tests.paths import PROJECT_ROOT

DATA = PROJECT_ROOT / "data" / "taxi" / "span-1" / "data.csv"


def test_pushed_model_serves_raw_csv_rows_through_mlops_predict(small_pipeline, tmp_path):
    base = small_pipeline.serving_model_dir
    assert list_versions(base), f"the pipeline pushed nothing to {base}"
    rows = tmp_path / "rows.csv"
    with open(DATA, newline="") as f:
        rows.write_text(
            "".join(next(f) for _ in range(21))
        )  # header + 20 raw rows, blanks included
    server = sm.ServerProcess("--model_name=taxi", f"--model_base_path={base}").wait_ready()
    try:
        outputs = {}
        for protocol, port, encoding in (
            ("rest", server.rest_port, "examples"),
            ("grpc", server.grpc_port, "examples"),
            ("rest", server.rest_port, "raw"),
        ):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mlops.cli",
                    "predict",
                    "--model_name=taxi",
                    f"--input={rows}",
                    f"--protocol={protocol}",
                    f"--port={port}",
                    f"--encoding={encoding}",
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert out.returncode == 0, out.stderr[-3000:]
            preds = [json.loads(line)["probabilities"][0] for line in out.stdout.splitlines()]
            assert len(preds) == 20 and all(0.0 <= p <= 1.0 for p in preds)
            outputs[(protocol, encoding)] = preds
        assert outputs[("rest", "examples")] == pytest.approx(
            outputs[("grpc", "examples")], rel=1e-5
        )
    finally:
        server.stop()
