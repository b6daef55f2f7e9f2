"""The scale benchmark's row generator: valid, deterministic, label-preserving taxi-like rows."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from bench import generate_rows
from modules import features
from pipeline.ingest.spans import layout_error
from pipeline.testing.samples import TAXI_CSV
from tests.paths import PROJECT_ROOT


def _read(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _label(row) -> bool:
    return float(row["tips"]) > features.LABEL_TIP_FRACTION * float(row["fare"])


@pytest.mark.parametrize("rows", [1, 7, generate_rows.CHUNK_ROWS + 3])
def test_writes_the_requested_rows_in_the_span_layout(tmp_path, rows):
    path = generate_rows.write_span(tmp_path, rows, seed=1)
    assert path == tmp_path / "span-1" / "data.csv"
    assert layout_error(tmp_path) is None
    header, written = _read(path)
    assert header == _read(TAXI_CSV)[0]
    assert len(written) == rows
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed into place


def test_same_seed_same_bytes_other_seed_other_rows(tmp_path):
    a = generate_rows.write_span(tmp_path / "a", 3000, seed=5).read_bytes()
    b = generate_rows.write_span(tmp_path / "b", 3000, seed=5).read_bytes()
    c = generate_rows.write_span(tmp_path / "c", 3000, seed=6).read_bytes()
    assert a == b
    assert a != c


def test_rows_are_noisy_but_keep_the_label_relation(tmp_path):
    _, source = _read(TAXI_CSV)
    _, rows = _read(generate_rows.write_span(tmp_path, 20_000, seed=0))
    # Noise: most generated rows are not copies of a source row.
    seen = {tuple(r.values()) for r in source}
    copies = sum(tuple(r.values()) in seen for r in rows)
    assert copies < 0.05 * len(rows)
    # The label rate and what payment type says about the label stay as in span 1.
    src_rate = np.mean([_label(r) for r in source])
    gen_rate = np.mean([_label(r) for r in rows])
    assert abs(gen_rate - src_rate) < 0.02
    for payment, low, high in (("Cash", 0.0, 0.05), ("Credit Card", 0.5, 0.85)):
        rate = np.mean([_label(r) for r in rows if r["payment_type"] == payment])
        assert low <= rate <= high, (payment, rate)
    # Optional columns keep their missing rate; required ones stay present.
    for name in ("dropoff_census_tract", "company"):
        src_missing = np.mean([r[name] == "" for r in source])
        gen_missing = np.mean([r[name] == "" for r in rows])
        assert abs(gen_missing - src_missing) < 0.03, name
    assert all(r["fare"] != "" and r["tips"] != "" for r in rows)


def test_bad_row_count_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "bench" / "generate_rows.py"),
            "--rows",
            "0",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "span-1").exists()


@pytest.mark.slow
def test_generated_rows_pass_the_curated_schema(tmp_path):
    import tensorflow_data_validation as tfdv

    from pipeline.config import PipelineConfig

    path = generate_rows.write_span(tmp_path, 5000, seed=3)
    stats = tfdv.generate_statistics_from_csv(str(path))
    schema = tfdv.load_schema_text(PipelineConfig().schema_path)
    anomalies = tfdv.validate_statistics(stats, schema, environment="TRAINING")
    assert not anomalies.anomaly_info, dict(anomalies.anomaly_info)
    (dataset,) = stats.datasets
    assert dataset.num_examples == 5000
