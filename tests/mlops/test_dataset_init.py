"""`mlops dataset init`: a draft spec + schema from a CSV nobody has seen before, its one-line
refusals, and hostile CSVs (never a traceback)."""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_support import Exit
from modules import dataset_spec
from pipeline import dataset_draft as dataset_init
from pipeline.dataset_draft import InitError
from tests.paths import PROJECT_ROOT


def synthetic_csv(path: Path, seed: int, rows: int = 300) -> Path:
    """Mixed numeric/string columns and a binary label with real signal (it depends on
    `income`, `plan` and `visits`), some cells empty, an all-empty and a constant column."""
    rng = random.Random(seed)
    plans = ["basic", "plus", "pro"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            ["Customer ID", "income", "plan", "visits", "region", "Notes", "constant", "churned"]
        )
        for i in range(rows):
            income = rng.gauss(50, 15)
            plan = rng.choice(plans)
            visits = rng.randint(0, 20)
            score = 0.08 * (income - 50) + {"basic": -1.0, "plus": 0.0, "pro": 1.2}[plan]
            score += 0.15 * (visits - 10) + rng.gauss(0, 0.7)
            w.writerow(
                [
                    f"C{i:05d}",
                    "" if rng.random() < 0.05 else f"{income:.2f}",
                    plan,
                    visits,
                    rng.choice(["north", "south", "east", "west", "NA"]),
                    "",
                    "x",
                    "yes" if score > 0 else "no",
                ]
            )
    return path


def test_init_drafts_a_spec_and_schema_the_pipeline_can_load(tmp_path):
    source = synthetic_csv(tmp_path / "customers.csv", seed=random.randrange(1 << 30))
    path, draft = dataset_init.init(
        "customers", source, "churned", datasets_dir=tmp_path / "ds", data_dir=tmp_path / "data"
    )
    spec = dataset_spec.load(path)
    assert spec.task == "binary" and spec.label == "churned" and spec.classes == ("no", "yes")
    assert spec.numeric == ("income",)
    assert spec.categorical == {"visits": 21} or spec.categorical["visits"] >= 19
    assert set(spec.vocabulary) == {"plan", "region"}
    # An identifier and a constant are not model inputs; the all-empty column is dropped.
    assert set(spec.unused) == {"customer_id", "constant"}
    assert "notes" not in spec.kinds
    assert any("all-empty" in w and "'Notes'" in w for w in draft.warnings)
    assert any("'Customer ID' -> customer_id" in w for w in draft.warnings)
    assert spec.data_root == str((tmp_path / "data" / "customers").resolve())
    with open(Path(spec.data_root) / "span-1" / "data.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300 and "notes" not in rows[0]
    # "NA" is written as an empty cell: a missing value, as CsvExampleGen reads it.
    assert "NA" not in {r["region"] for r in rows} and "" in {r["region"] for r in rows}
    import tensorflow_data_validation as tfdv

    schema = Path(spec.schema_path).read_text()
    assert 'not_in_environment: "SERVING"' in schema
    # Columns with empty cells accept examples without a value.
    features = {f.name: f for f in tfdv.load_schema_text(spec.schema_path).feature}
    assert not features["income"].value_count.min and features["plan"].value_count.min == 1
    assert spec.thresholds["min_auc_gain"] == 1e-10


def test_task_is_guessed_from_the_label_or_taken_from_the_flag(tmp_path):
    source = tmp_path / "p.csv"
    source.write_text(
        "a,b,kind,size\n" + "".join(f"{i},x{i % 3},{'abc'[i % 3]},{i * 1.5}\n" for i in range(30))
    )
    assert dataset_init.draft("p", source, "kind").spec["task"] == "multiclass"
    assert dataset_init.draft("p", source, "size").spec["task"] == "regression"
    draft = dataset_init.draft("p", source, "a", task="regression")
    assert draft.spec["task"] == "regression" and "max_mse" in draft.spec["evaluation"]
    with pytest.raises(InitError, match="binary needs exactly 2"):
        dataset_init.draft("p", source, "kind", task="binary")
    with pytest.raises(InitError, match="cannot be regressed"):
        dataset_init.draft("p", source, "kind", task="regression")


def _init(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops.cli",
            "dataset",
            "init",
            *args,
            "--datasets-dir",
            str(tmp_path / "ds"),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )


@pytest.mark.slow  # eleven `mlops` processes, each importing TFDV: about 35 s
def test_refusals_are_one_line_exit_1_and_write_nothing(tmp_path):
    good = synthetic_csv(tmp_path / "good.csv", seed=7, rows=40)
    one_class = tmp_path / "one.csv"
    one_class.write_text("x,y\n1,a\n2,a\n3,a\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("x,y\n")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage\x00")
    empty_label = tmp_path / "empty_label.csv"
    empty_label.write_text("x,y\n1,\n2,\n")
    bad, missing, flag = Exit.BAD_INPUT, Exit.INPUT_MISSING, Exit.FAILED
    cases = [
        (("bad", "--from", str(good), "--label", "nope"), "has no label column 'nope'", bad),
        (("bad", "--from", str(one_class), "--label", "y"), "has one value ('a')", bad),
        (("bad", "--from", str(empty), "--label", "y"), "is empty", bad),
        (("bad", "--from", str(header_only), "--label", "y"), "no data rows", bad),
        (("bad", "--from", str(binary), "--label", "y"), "is not UTF-8 text", bad),
        (("bad", "--from", str(tmp_path / "absent.csv"), "--label", "y"), "cannot read", missing),
        (("bad", "--from", str(empty_label), "--label", "y"), "label column 'y' is empty", bad),
        (("Bad Name", "--from", str(good), "--label", "churned"), "dataset name 'Bad Name'", flag),
    ]
    for args, message, status in cases:
        out = _init(tmp_path, *args)
        assert out.returncode == status, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, out.stderr)
        assert lines[0].startswith("Error: ")
        assert not (tmp_path / "ds" / "bad").exists() and not (tmp_path / "data" / "bad").exists()
    # An existing dataset is not overwritten without --force.
    assert _init(tmp_path, "good", "--from", str(good), "--label", "churned").returncode == 0
    again = _init(tmp_path, "good", "--from", str(good), "--label", "churned")
    assert again.returncode == Exit.REJECTED and "already exists" in again.stderr
    assert (
        _init(tmp_path, "good", "--from", str(good), "--label", "churned", "--force").returncode
        == 0
    )


# ---- hostile CSVs --------------------------------------------------------------------------------
_cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "NA", "nan", "inf", "1e309", "-0", "007", "9223372036854775808", '"']),
    # the gates' value classes: non-finite, float32/int64 overflow, formula-like text
    st.sampled_from(["NaN", "-inf", "Infinity", "1e50", "1e400", "3.5e38", "-9223372036854775809"]),
    st.sampled_from(["=1+1", "+cmd", "@SUM(A1)", "\t=1"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
_headers = st.lists(
    st.one_of(st.text(max_size=10), st.sampled_from(["", " ", "label", "Label", "ünï", "a,b"])),
    min_size=1,
    max_size=5,
)


@st.composite
def hostile_csv(draw) -> tuple[str, str]:
    header = draw(_headers)
    rows = draw(
        st.lists(st.lists(_cells, min_size=0, max_size=len(header) + 1), min_size=0, max_size=12)
    )
    label = draw(st.sampled_from([*header, "label"]))
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
    writer.writerow(header)
    writer.writerows(rows)
    bom = "\ufeff" if draw(st.booleans()) else ""  # a UTF-8 byte order mark before the header
    return bom + buf.getvalue(), label


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(hostile_csv())
def test_hostile_csvs_give_a_loadable_draft_or_one_line(tmp_path, case):
    text, label = case
    target = Path(tempfile.mkdtemp(dir=tmp_path))
    source = target / "in.csv"
    source.write_text(text, encoding="utf-8")
    try:
        path, draft = dataset_init.init(
            "hostile", source, label, datasets_dir=target / "ds", data_dir=target / "data"
        )
    except InitError as e:
        assert str(e) and "\n" not in str(e)
        assert not (target / "ds" / "hostile").exists()
        return
    spec = dataset_spec.load(path)
    assert spec.raw_feature_keys and spec.label in spec.kinds
    assert not any("\ufeff" in key for key in spec.kinds)  # the BOM is no part of a name
    written = yaml.safe_load(path.read_text())
    assert written["task"] == spec.task
    with open(Path(spec.data_root) / "span-1" / "data.csv", newline="", encoding="utf-8") as f:
        lines = f.read().splitlines()
    # One physical line per row: CsvExampleGen reads line by line.
    assert len(lines) == len(draft.rows) + 1
