"""The model card says why this model and not the run's baselines."""

from __future__ import annotations

import model_card
from modules import baselines


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
