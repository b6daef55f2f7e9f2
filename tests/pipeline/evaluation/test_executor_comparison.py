"""The Evaluator's executor carries the Trainer's comparison and feature importance from the model
artifact into the evaluation (pipeline/evaluation/executor.py), with real TFX artifacts."""

from __future__ import annotations

import os

from tfx.types import standard_artifacts, standard_component_specs

from modules import baselines, importance
from pipeline.evaluation import executor


def _artifact(kind, uri: str):
    a = kind()
    a.uri = uri
    os.makedirs(uri, exist_ok=True)
    return a


def _comparison(blessable: bool) -> dict:
    return {"blessable": blessable, "decision": "candidate beats the linear baseline"}


def test_comparison_and_importance_are_copied_into_the_evaluation(tmp_path):
    model = _artifact(standard_artifacts.Model, str(tmp_path / "model"))
    evaluation = _artifact(standard_artifacts.ModelEvaluation, str(tmp_path / "evaluation"))
    blessing = _artifact(standard_artifacts.ModelBlessing, str(tmp_path / "blessing"))
    measured = {"metric": "auc", "features": [{"feature": "fare", "importance": 0.2, "std": 0}]}
    baselines.write_comparison(model.uri, _comparison(True))
    importance.write_importance(model.uri, measured)
    executor.apply_baseline_comparison(
        {standard_component_specs.MODEL_KEY: [model]},
        {
            standard_component_specs.EVALUATION_KEY: [evaluation],
            standard_component_specs.BLESSING_KEY: [blessing],
        },
    )
    assert baselines.read_comparison(evaluation.uri) == _comparison(True)
    assert importance.read_importance(evaluation.uri) == measured


def test_a_model_without_importance_still_gets_its_comparison_copied(tmp_path):
    model = _artifact(standard_artifacts.Model, str(tmp_path / "model"))
    evaluation = _artifact(standard_artifacts.ModelEvaluation, str(tmp_path / "evaluation"))
    baselines.write_comparison(model.uri, _comparison(True))
    executor.apply_baseline_comparison(
        {standard_component_specs.MODEL_KEY: [model]},
        {standard_component_specs.EVALUATION_KEY: [evaluation]},
    )
    assert baselines.read_comparison(evaluation.uri) == _comparison(True)
    assert importance.read_importance(evaluation.uri) is None
