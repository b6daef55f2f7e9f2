"""The model card says why this model and not the run's baselines."""

from __future__ import annotations

import json
import os

import model_card
import model_layout
from modules import baselines, features, importance


def test_the_card_shows_candidate_baselines_margin_and_decision():
    comparison = {
        "metric": "auc",
        "eval_rows": 3000,
        "scores": {"candidate": 0.9557, "linear": 0.9473, "constant": 0.5},
        "train_seconds": {"candidate": 8.4, "linear": 8.1},
        "exported": baselines.CANDIDATE,
        "gain_over_linear": 0.0084,
        "required_gain": 0.0037,
        "margin_source": "eval noise (bootstrap, one-sided 95%)",
        "decision": "candidate beats the linear baseline",
    }
    card = {
        "model_name": "taxi",
        "version": "1",
        "lineage": {},
        "evaluation": {"metrics": {"auc": 0.9557}, "comparison": comparison},
    }
    text = model_card.to_markdown(card)
    assert "## Candidate vs the run's baselines (auc, 3000 eval rows)" in text
    rows = [line for line in text.splitlines() if line.startswith("| candidate ")]
    assert rows and "0.9557" in rows[0] and "yes" in rows[0]
    assert "Margin over the linear baseline: +0.0084 (needed more than 0.0037" in text
    assert "Decision: candidate beats the linear baseline." in text
    card["evaluation"].pop("comparison")
    assert "baselines" not in model_card.to_markdown(card)


def test_the_card_shows_what_the_model_looks_at():
    measured = {
        "metric": "mean_squared_error",
        "higher_is_better": False,
        "score": 2990.5,
        "eval_rows": 89,
        "repeats": 3,
        "seed": 0,
        "features": [
            {"feature": "bmi", "importance": 1234.5, "std": 80.25},
            {"feature": "noise", "importance": -0.5, "std": 1.0},
        ],
    }
    card = {
        "model_name": "diabetes",
        "version": "7",
        "lineage": {},
        "evaluation": {"metrics": {}, "feature_importance": measured},
    }
    text = model_card.to_markdown(card)
    assert "## Feature importance (permutation, mean_squared_error, 89 eval rows)" in text
    assert "How much mean_squared_error rises (from 2990) when one feature's values" in text
    rows = [line for line in text.splitlines() if line.startswith("| bmi ") or "noise" in line]
    assert rows == ["| bmi | 1234.5000 | 80.2500 |", "| noise | -0.5000 | 1.0000 |"]
    card["evaluation"].pop("feature_importance")
    assert "Feature importance" not in model_card.to_markdown(card)


def test_the_pushed_models_card_lists_every_raw_feature_by_importance(small_pipeline):
    """End to end: run_fn measured the importance, the Evaluator copied it into the evaluation,
    the Pusher's card shows it."""
    assert small_pipeline.exit_code == 0 and small_pipeline.report.pushed_path
    version_dir = small_pipeline.report.pushed_path
    with open(model_layout.card_path(version_dir, "json")) as f:
        card = json.load(f)
    measured = card["evaluation"]["feature_importance"]
    assert measured["metric"] == "auc" and measured["higher_is_better"] is True
    assert sorted(f["feature"] for f in measured["features"]) == sorted(features.RAW_FEATURE_KEYS)
    drops = [f["importance"] for f in measured["features"]]
    assert drops == sorted(drops, reverse=True) and drops[0] > 0
    with open(model_layout.card_path(version_dir, "md")) as f:
        text = f.read()
    assert f"## Feature importance (permutation, auc, {measured['eval_rows']} eval rows)" in text
    top = measured["features"][0]
    assert f"| {top['feature']} | {top['importance']:.4f} |" in text
    evaluation_uri = card["evaluation"]["evaluation_uri"]
    assert os.path.isfile(os.path.join(evaluation_uri, importance.IMPORTANCE_FILE))
