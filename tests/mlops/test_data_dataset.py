"""`mlops data add-span / check-skew --dataset NAME`: the dataset spec's schema, data root and
pipeline name are the defaults (an explicit option still wins); a bad spec is one line, exit 2."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from cli_support import Exit
from mlops.cli import main as mlops_main
from pipeline.config import dataset_config
from tests.paths import PROJECT_ROOT

PENGUINS = PROJECT_ROOT / "data" / "penguins" / "span-1" / "data.csv"


def _invoke(*args: str):
    return CliRunner().invoke(mlops_main, ["data", *args])


def test_add_span_checks_the_csv_against_the_datasets_schema(tmp_path):
    root = tmp_path / "penguins"
    added = _invoke("add-span", str(PENGUINS), "--dataset", "penguins", "--data-root", str(root))
    assert added.exit_code == 0, added.output
    assert "Added span 1" in added.output and "344 rows" in added.output
    assert (root / "span-1" / "data.csv").read_bytes() == PENGUINS.read_bytes()
    # The same file against the default (taxi) schema: refused, nothing written.
    other = tmp_path / "taxi"
    refused = _invoke("add-span", str(PENGUINS), "--data-root", str(other))
    assert refused.exit_code == Exit.REJECTED
    assert "Rejected, nothing written" in refused.output and "missing column(s)" in refused.output
    assert not other.exists() or not any(other.iterdir())


def test_add_span_defaults_to_the_datasets_data_root(tmp_path, monkeypatch):
    """Without --data-root the span goes under the spec's data root (here a copy of the spec
    whose data root is a temp dir, so the checkout's data is never written)."""
    spec_dir = tmp_path / "spec"
    shutil.copytree(PROJECT_ROOT / "datasets" / "penguins", spec_dir)
    text = (spec_dir / "dataset.yaml").read_text()
    text = text.replace("data_root: ../../data/penguins", f"data_root: {tmp_path / 'data'}")
    (spec_dir / "dataset.yaml").write_text(text)
    spec = str(spec_dir / "dataset.yaml")
    assert dataset_config(spec).data_root == str(tmp_path / "data")
    added = _invoke("add-span", str(PENGUINS), "--dataset", spec)
    assert added.exit_code == 0, added.output
    assert (tmp_path / "data" / "span-1" / "data.csv").is_file()


def test_check_skew_reads_the_datasets_pipeline(tmp_path):
    """No statistics of penguins_pipeline in an empty store: the message names that pipeline."""
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "metadata.db")
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    mlmd.MetadataStore(config)  # an empty store: no pipeline has run
    requests = tmp_path / "requests"
    requests.mkdir()
    result = _invoke(
        "check-skew",
        "--requests",
        str(requests),
        "--dataset",
        "penguins",
        "--metadata",
        f"sqlite:///{tmp_path / 'metadata.db'}",
    )
    assert result.exit_code == Exit.FAILED
    assert result.output.startswith(
        "Error: check-skew could not run: no statistics of penguins_pipeline"
    )
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize(
    "command", [["add-span", str(PENGUINS)], ["check-skew", "--requests", "."]]
)
@pytest.mark.parametrize("dataset", ["nope", "/etc/passwd", "../../etc", "a" * 5000])
def test_a_bad_dataset_is_one_line_and_exit_2(command, dataset):
    result = _invoke(*command, "--dataset", dataset)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: not a usable dataset spec:")
    assert len(result.output.strip().splitlines()) == 1, result.output
