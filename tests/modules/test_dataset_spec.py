"""The dataset spec (modules/dataset_spec.py): the one description of a dataset, its loader's
one-line errors, and what derives from it (features facade, eval config, pipeline exec
properties and their cache key)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modules import dataset_spec, features
from modules.dataset_spec import DatasetSpec, SpecError
from pipeline.config import PipelineConfig, dataset_config
from pipeline.pipeline import create_pipeline, eval_config
from pipeline.testing.samples import small_config
from tests.paths import PROJECT_ROOT

TAXI_SPEC = PROJECT_ROOT / "datasets" / "taxi" / "dataset.yaml"


def _copy(tmp_path: Path, name: str = "taxi") -> Path:
    """A dataset directory copied out of datasets/, its paths made absolute."""
    spec = dataset_spec.load(name)
    target = tmp_path / name
    target.mkdir()
    data = yaml.safe_load(Path(spec.spec_path).read_text())
    shutil.copy(spec.schema_path, target / "schema.pbtxt")
    data["schema"] = "schema.pbtxt"
    data["source"] = {"data_root": spec.data_root, "input_pattern": spec.input_pattern}
    (target / "dataset.yaml").write_text(yaml.safe_dump(data))
    return target / "dataset.yaml"


def _edit(path: Path, change) -> Path:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_taxi_facade_is_the_taxi_spec():
    spec = dataset_spec.load("taxi")
    assert features.SPEC == spec
    assert features.RAW_FEATURE_KEYS == spec.raw_feature_keys
    assert features.LABEL_KEY == "big_tipper" and spec.task == dataset_spec.BINARY
    assert (features.TIPS_KEY, features.FARE_KEY, features.LABEL_TIP_FRACTION) == (
        "tips",
        "fare",
        0.2,
    )
    # Types come from the curated schema.
    assert features.raw_dtype("company") == "bytes"
    assert features.raw_dtype("trip_seconds") == "int64"
    assert features.raw_dtype("fare") == "float"
    # The pipeline's defaults are the taxi spec's.
    assert dataset_config("taxi") == PipelineConfig()
    assert PipelineConfig().thresholds.min_auc == spec.thresholds["min_auc"]


def test_spec_survives_the_trip_through_custom_config():
    for name in ("taxi", "penguins"):
        spec = dataset_spec.load(name)
        config = json.loads(json.dumps(spec.to_config()))
        back = DatasetSpec.from_config(config)
        assert back.raw_feature_keys == spec.raw_feature_keys
        assert back.classes == spec.classes and back.kinds == spec.kinds
        assert dataset_spec.from_custom_config({"dataset": config}).label == spec.label
        # No machine paths in the cache key.
        assert not set(dataset_spec.LOCAL_PATHS) & set(config)


def test_penguins_pipeline_settings_come_from_its_spec():
    config = dataset_config("penguins")
    assert config.pipeline_name == "penguins_pipeline" and config.model_name == "penguins"
    assert config.data_root == str(PROJECT_ROOT / "data" / "penguins")
    assert config.model_serving_dir == str(PROJECT_ROOT / "serving_model" / "penguins")
    assert config.slice_features == ("island",) and config.thresholds is None


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(task="ranking"), "task must be one of"),
        (lambda d: d.update(colour="blue"), "unknown key(s) colour"),
        (lambda d: d["features"].update(numeric=["fare", "nope"]), "'nope' is not in the schema"),
        (
            lambda d: (
                d["features"]["vocabulary"]["keys"].remove("company"),
                d["features"].update(numeric=["fare", "company"]),
            ),
            "is a string column",
        ),
        (
            lambda d: d["features"].update(numeric=["fare", "trip_start_hour"]),
            "is both numeric and categorical",
        ),
        (lambda d: d["label"].update(classes=["a", "b", "c"]), "exactly 2 classes"),
        (lambda d: d["label"]["derive"].update(numerator="nope"), "derive.numerator"),
        (lambda d: d["evaluation"].update(max_mse=1.0), "unknown key(s) max_mse"),
        (lambda d: d["evaluation"].update(min_auc="high"), "must be a number"),
        (lambda d: d["features"]["categorical"].update(trip_start_day=0), "must be positive"),
        (lambda d: d.update(slices=["nope"]), "slices: 'nope'"),
        (lambda d: d.update(schema="missing.pbtxt"), "cannot read the schema"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_file_and_key(tmp_path, change, message):
    path = _edit(_copy(tmp_path), change)
    with pytest.raises(SpecError) as error:
        dataset_spec.load(path)
    text = str(error.value)
    assert message in text and str(path) in text and "\n" not in text


def test_unreadable_specs_are_one_line(tmp_path):
    assert "no dataset spec" in str(pytest.raises(SpecError, dataset_spec.load, "nope").value)
    bad = tmp_path / "dataset.yaml"
    bad.write_text("name: [unclosed\n")
    text = str(pytest.raises(SpecError, dataset_spec.load, bad).value)
    assert "not valid YAML" in text and "\n" not in text
    bad.write_text("- just\n- a list\n")
    assert "expected a mapping" in str(pytest.raises(SpecError, dataset_spec.load, bad).value)


def test_keys_owned_elsewhere_pass_through_unparsed(tmp_path):
    sources = [{"kind": "parquet", "path": "x/*.parquet", "anything": {"nested": 1}}]
    path = _edit(_copy(tmp_path), lambda d: d.update(sources=sources, max_quarantine_fraction=0.05))
    spec = dataset_spec.load(path)
    assert spec.extra == {"sources": sources, "max_quarantine_fraction": 0.05}


def test_the_spec_s_sources_and_quarantine_threshold_reach_the_pipeline_config(tmp_path):
    sources = [
        {"kind": "parquet", "path": str(tmp_path / "history"), "name": "history"},
        {"kind": "csv", "path": str(tmp_path / "new"), "name": "new"},
    ]
    path = _edit(_copy(tmp_path), lambda d: d.update(sources=sources, max_quarantine_fraction=0.05))
    config = dataset_config(path)
    assert [(s.kind, s.name) for s in config.sources] == [("parquet", "history"), ("csv", "new")]
    assert config.max_quarantine_fraction == 0.05
    # Without the keys: the spec's CSV data root and the default threshold.
    (tmp_path / "plain").mkdir()
    plain = dataset_config(_copy(tmp_path / "plain"))
    assert plain.sources == () and plain.max_quarantine_fraction == 0.01


@pytest.mark.parametrize("bad", [-0.1, 1.5, "1%", True])
def test_a_bad_quarantine_threshold_in_a_spec_is_one_line(tmp_path, bad):
    path = _edit(_copy(tmp_path), lambda d: d.update(max_quarantine_fraction=bad))
    error = pytest.raises(SpecError, dataset_config, path).value
    assert "max_quarantine_fraction" in str(error) and "\n" not in str(error)


def _metrics(config) -> dict[str, dict]:
    found = {}
    for metrics_spec in config.metrics_specs:
        for metric in metrics_spec.metrics:
            found[metric.class_name] = metric
    return found


def test_eval_config_follows_the_task(tmp_path):
    binary = eval_config(PipelineConfig())
    metrics = _metrics(binary)
    assert {"AUC", "BinaryAccuracy", "HistogramCalibration", "ExampleCount"} <= set(metrics)
    auc = metrics["AUC"].per_slice_thresholds[0].threshold
    assert auc.value_threshold.lower_bound.value == 0.85
    assert auc.change_threshold.absolute.value == 1e-10

    penguins = eval_config(dataset_config("penguins"))
    metrics = _metrics(penguins)
    assert {"SparseCategoricalAccuracy", "Precision", "Recall"} <= set(metrics)
    assert "AUC" not in metrics
    accuracy = metrics["SparseCategoricalAccuracy"].per_slice_thresholds[0].threshold
    assert accuracy.value_threshold.lower_bound.value == 0.90
    (binarized,) = [m for m in penguins.metrics_specs if m.HasField("binarize")]
    assert list(binarized.binarize.class_ids.values) == [0, 1, 2]
    assert [s.feature_keys for s in penguins.slicing_specs] == [[], ["island"]]
    assert penguins.model_specs[0].label_key == "species_xf"

    path = _edit(
        _copy(tmp_path, "penguins"),
        lambda d: d.update(
            task="regression",
            label={"name": "body_mass_g"},
            features={"numeric": ["bill_length_mm", "flipper_length_mm"]},
            evaluation={"max_mse": 250000.0, "max_mae": 400.0, "max_mse_increase": -1e-10},
        ),
    )
    metrics = _metrics(eval_config(dataset_config(path)))
    mse = metrics["MeanSquaredError"].per_slice_thresholds[0].threshold
    assert mse.value_threshold.upper_bound.value == 250000.0
    assert mse.change_threshold.absolute.value == -1e-10
    assert metrics["MeanAbsoluteError"].per_slice_thresholds[0].threshold.value_threshold
    assert "SparseCategoricalAccuracy" not in metrics


def _user_code_properties(config) -> dict[str, str]:
    nodes = {c.id: c for c in create_pipeline(config).components}
    return {
        node: nodes[node].exec_properties["custom_config"]
        for node in ("Transform", "Tuner", "Trainer")
    }


def test_the_spec_reaches_every_user_code_component_and_editing_it_invalidates_the_cache(
    tmp_path,
):
    path = _copy(tmp_path)
    config = small_config(tmp_path, tmp_path / "data", dataset=str(path))
    before = _user_code_properties(config)
    for node, text in before.items():
        assert json.loads(text)["dataset"] == dataset_spec.load(path).to_config(), node
    # An edit a model would notice (another bucket count): every user-code component's exec
    # properties change, so none of them is taken from the cache.
    _edit(path, lambda d: d["features"]["bucketized"].update(buckets=12))
    after = _user_code_properties(config)
    assert all(after[node] != before[node] for node in before)
    # The drift tests and the evaluator follow the spec too.
    nodes = {c.id: c for c in create_pipeline(dataset_config("penguins")).components}
    tests = json.loads(nodes["DriftValidator"].exec_properties["feature_tests"])
    assert set(tests) == set(dataset_spec.load("penguins").raw_feature_keys)
    assert tests["island"]["min_distance"] == 0.05


def test_runner_refuses_an_unknown_dataset_in_one_line():
    out = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "runners" / "local_runner.py"), "--dataset", "nope"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("Pipeline not started: no dataset spec")
    assert "Traceback" not in out.stderr
