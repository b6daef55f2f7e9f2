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
