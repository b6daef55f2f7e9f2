"""`mlops dataset init` writes evaluation bars relative to baselines fitted on the CSV (the
constant predictor and a cross-validated linear model), with the evidence in comments."""

from __future__ import annotations

import statistics

import yaml

from modules import dataset_spec
from pipeline import dataset_draft
from tests.quality_samples import REGRESSION_NOISE_SD, binary_csv, linear_regression_csv


def test_regression_bar_is_the_linear_models_mse_not_the_label_variance(tmp_path):
    source = linear_regression_csv(tmp_path / "reg.csv")
    path, draft = dataset_draft.init(
        "reg", source, "target", datasets_dir=tmp_path / "ds", data_dir=tmp_path / "data"
    )
    labels = [float(r[-1]) for r in draft.rows]
    variance = statistics.pvariance(labels)
    noise = REGRESSION_NOISE_SD**2
    bar = dataset_spec.load(path).thresholds["max_mse"]
    # Near what a linear model reaches (the noise variance), far below the label's variance.
    assert noise < bar < 2 * noise < variance / 2
    text = path.read_text()
    assert "5-fold CV on 400 rows" in text and "constant predictor" in text
    # Comments sit right above the bar they explain, and the file is still the same spec.
    lines = text.splitlines()
    at = lines.index(f"  max_mse: {bar:g}")
    assert lines[at - 1].lstrip().startswith("# bar: linear MSE plus 2 fold SDs")
    assert yaml.safe_load(text)["evaluation"]["max_mse"] == bar


def test_binary_bars_follow_the_cross_validated_logistic_model(tmp_path):
    source = binary_csv(tmp_path / "bin.csv")
    draft = dataset_draft.draft("bin", source, "label")
    bars = draft.spec["evaluation"]
    labels = [r[-1] for r in draft.rows]
    majority = max(labels.count("0"), labels.count("1")) / len(labels)
    # A signal a logistic model finds: its AUC bar is well above a constant's 0.5, and the
    # accuracy bar at least the majority rate.
    assert 0.8 < bars["min_auc"] < 1.0
    assert bars["min_accuracy"] >= round(majority, 3) - 1e-3
    assert bars["min_auc_gain"] == 1e-10
    assert any("logistic" in n or "linear model" in n for n in draft.threshold_notes["min_auc"])


def test_a_label_without_signal_falls_back_to_the_constant(tmp_path):
    source = tmp_path / "noise.csv"
    rows = ["a,kind"] + [f"{(i * 7919) % 101},{'xyz'[(i * 31) % 3]}" for i in range(120)]
    source.write_text("\n".join(rows) + "\n")
    bars = dataset_draft.draft("noise", source, "kind").spec["evaluation"]
    evidence = {
        e.metric: e
        for e in dataset_draft.baseline_evidence(
            *_parts(source, "kind"),
        )
    }
    # Never a bar below what always answering the majority class scores.
    assert bars["min_accuracy"] >= round(evidence["accuracy"].constant, 3) - 1e-3


def _parts(source, label):
    header, rows = dataset_draft.read_csv(source)
    columns = dataset_draft._columns(header, rows, source)
    label_column = next(c for c in columns if c.name == label)
    classes = dataset_draft._classes(label_column, "multiclass")
    roles = {c.name: dataset_draft._role(c, len(rows)) for c in columns if c is not label_column}
    return columns, label_column, roles, "multiclass", classes
