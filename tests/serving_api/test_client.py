"""`mlops predict` and serving_api.client against a live server, on the taxi CSV's real rows.

`mlops predict` runs in this process (click's CliRunner): what it prints and its exit status
are under test here, not a fresh interpreter's start-up (tests/mlops/test_cli_output.py runs
it as a subprocess for that)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner, Result

from mlops.cli import main as mlops_main
from modules import features
from serving_api import client
from tests import serving_models as sm
from tests.paths import PROJECT_ROOT

DATA = PROJECT_ROOT / "data" / "taxi" / "span-1" / "data.csv"


@pytest.fixture(scope="module")
def rows_csv(tmp_path_factory) -> Path:
    """The first 25 rows of the real span, blanks included (the CSV has many missing values)."""
    out = tmp_path_factory.mktemp("rows") / "rows.csv"
    with open(DATA, newline="") as f:
        lines = [next(f) for _ in range(26)]
    out.write_text("".join(lines))
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("served") / "taxi"
    path = sm.build_model(base / "1", bias=-1.0)
    proc = sm.ServerProcess("--model_name=taxi", f"--model_base_path={base}").wait_ready()
    yield proc, tf.saved_model.load(path)
    proc.stop()


def _mlops(*args: str) -> Result:
    return CliRunner().invoke(mlops_main, ["predict", *args])


def _mlops_predict(server, *args: str) -> list[dict]:
    port = server.rest_port if "--protocol=rest" in args else server.grpc_port
    out = _mlops("--model_name=taxi", f"--port={port}", *args)
    assert out.exit_code == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_encode_example_uses_feature_kinds_and_skips_blanks():
    from tensorflow.core.example import example_pb2

    ex = example_pb2.Example.FromString(
        client.encode_example(
            {
                "fare": "12.5",
                "trip_seconds": "300.0",
                "company": "",
                "payment_type": "Cash",
                "tips": "1",
            }
        )
    )
    feats = ex.features.feature
    assert list(feats["fare"].float_list.value) == [12.5]
    assert list(feats["trip_seconds"].int64_list.value) == [300]
    assert list(feats["payment_type"].bytes_list.value) == [b"Cash"]
    assert "company" not in feats and "tips" not in feats  # blank / not a model input


def test_read_rows_csv_json_and_jsonl(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"fare": 1.0}, {"fare": 2.0}]))
    (tmp_path / "b.jsonl").write_text('{"fare": 1.0}\n{"fare": 3.0}\n')
    assert [r["fare"] for r in client.read_rows(str(tmp_path / "a.json"))] == [1.0, 2.0]
    assert [r["fare"] for r in client.read_rows(str(tmp_path / "b.jsonl"))] == [1.0, 3.0]
    assert client.read_rows(io.StringIO("fare,company\n1.5,x\n"), "csv") == [
        {"fare": "1.5", "company": "x"}
    ]


def test_mlops_predict_rest_and_grpc_agree_with_the_model(served, rows_csv):
    server, model = served
    with open(rows_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    want = model.signatures["serving_default"](
        examples=tf.constant([client.encode_example(r) for r in rows])
    )["probabilities"].numpy()
    rest_out = _mlops_predict(server, "--protocol=rest", f"--input={rows_csv}", "--batch_size=10")
    grpc_out = _mlops_predict(server, "--protocol=grpc", f"--input={rows_csv}")
    assert [r["row"] for r in rest_out] == list(range(len(rows)))
    np.testing.assert_allclose([r["probabilities"] for r in rest_out], want, rtol=1e-5)
    np.testing.assert_allclose([r["probabilities"] for r in grpc_out], want, rtol=1e-5)


def test_mlops_predict_raw_encoding_matches_examples_on_complete_rows(served, tmp_path):
    server, _ = served
    rows = [{**sm.SAMPLE_ROW, "fare": f} for f in (1.0, 20.0, 55.5)]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    by_examples = _mlops_predict(server, "--protocol=grpc", f"--input={path}")
    by_raw = _mlops_predict(server, "--protocol=rest", "--encoding=raw", f"--input={path}")
    assert len(by_raw) == 3
    np.testing.assert_allclose(
        [r["probabilities"] for r in by_raw], [r["probabilities"] for r in by_examples], rtol=1e-5
    )


def test_mlops_predict_reports_server_errors(served, rows_csv):
    server, _ = served
    out = _mlops("--model_name=nope", f"--port={server.rest_port}", f"--input={rows_csv}")
    assert out.exit_code == 1 and "Servable not found" in out.stderr


def test_raw_columns_fill_missing_values_with_typed_defaults():
    cols = client.raw_columns([{"fare": "", "company": None, "trip_start_hour": "7"}])
    assert set(cols) == set(features.RAW_FEATURE_KEYS)
    assert cols["fare"] == [0.0] and cols["company"] == [""] and cols["trip_start_hour"] == [7]
