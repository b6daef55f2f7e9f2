"""The model families' names and selection, and what the default path does not load."""

from __future__ import annotations

import subprocess
import sys

import keras_tuner as kt
import pytest

from modules.families import (
    ALL_FAMILIES,
    FAMILIES,
    GRADIENT_BOOSTED_TREES,
    LINEAR,
    MODEL_FAMILIES_KEY,
    WIDE_AND_DEEP,
    check_families,
    configured_families,
)
from modules.model import TREE_DEPTHS, for_families, hyperparameter_space, model_family


def test_unknown_family_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown model family 'xgboost': expected one of"):
        check_families(["linear", "xgboost"])
    assert check_families([LINEAR, LINEAR, WIDE_AND_DEEP]) == (LINEAR, WIDE_AND_DEEP)


def test_default_space_is_unchanged_and_trees_add_their_depth_only_when_searched():
    assert configured_families(None) == FAMILIES == configured_families({"max_trials": 2})
    default = hyperparameter_space()
    assert set(default.values) == {
        "model_family",
        "learning_rate",
        "first_hidden_units",
        "num_hidden_layers",
    }
    assert GRADIENT_BOOSTED_TREES not in default._hps["model_family"][0].values
    every = hyperparameter_space(ALL_FAMILIES)
    assert set(every.values) == set(default.values) | {"max_depth"}
    assert model_family(every) == WIDE_AND_DEEP  # the default family stays the default
    assert configured_families({MODEL_FAMILIES_KEY: [GRADIENT_BOOSTED_TREES]}) == (
        GRADIENT_BOOSTED_TREES,
    )


def test_committed_hyperparameters_train_the_family_asked_for():
    committed = kt.HyperParameters()
    committed.values.update({"model_family": WIDE_AND_DEEP, "learning_rate": 0.001})
    trees = for_families(committed, (GRADIENT_BOOSTED_TREES,))
    assert model_family(trees) == GRADIENT_BOOSTED_TREES and trees.values["max_depth"] == 6
    kept = for_families(committed, FAMILIES)
    assert model_family(kept) == WIDE_AND_DEEP and kept.values["learning_rate"] == 0.001


def test_the_model_server_and_the_default_families_do_not_import_tfdf():
    """TF-DF's import (and its ops) only come with the family: the model server's start-up and
    building a default-family model never load it (fresh process). (tf.Transform and TFMA,
    hence the pipeline's components, import it themselves whenever it is installed.)"""
    code = (
        "import sys, serving.cli, serving.server, serving.repository, modules.families; "
        "from modules.model import build_keras_model, hyperparameter_space; "
        "build_keras_model(hyperparameter_space()); "
        "print('tensorflow_decision_forests' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "False"


def test_tree_trials_are_scored_by_the_forest_scorer_and_ranked_by_the_objective(tmp_path):
    from modules.tuner import FamilySearch

    scored, built = [], []

    def build(hp: kt.HyperParameters):
        """keras-tuner builds the default model once to see the space; no trial fits it."""
        import tf_keras as keras

        built.append(hp.values["max_depth"])
        return keras.Sequential([keras.layers.Dense(1)])

    def score_forest(hp: kt.HyperParameters) -> float:
        scored.append(hp.values["max_depth"])
        return 0.9 if hp.values["max_depth"] == 4 else 0.7

    # Only the trees' own choices: with the Keras families' unused ones in the space as well, the
    # random search's 4 trials sometimes drew one depth only (seen in CI).
    space = kt.HyperParameters()
    space.Choice("model_family", [GRADIENT_BOOSTED_TREES])
    space.Choice("max_depth", TREE_DEPTHS)
    tuner = FamilySearch(
        build,
        score_forest=score_forest,
        hyperparameters=space,
        objective=kt.Objective("val_auc", direction="max"),
        max_trials=4,
        directory=str(tmp_path),
        project_name="t",
        seed=0,
    )
    tuner.search()
    assert len(built) <= 1  # the space probe, no trial
    assert set(scored) == set(TREE_DEPTHS)  # every depth tried: the search ends once exhausted
    best = tuner.get_best_hyperparameters(1)[0]
    assert model_family(best) == GRADIENT_BOOSTED_TREES and best.values["max_depth"] == 4
