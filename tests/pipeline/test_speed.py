"""What makes runs cheap without changing their results: user code by import plus a fingerprint
(editing modules/ still re-executes), no self-evaluation of the served model on a re-run."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import tensorflow_model_analysis as tfma
from tfx.components.evaluator import constants
from tfx.types import standard_artifacts

from pipeline.config import MODULES_DIR
from pipeline.evaluation.executor import SkipSelfEvaluationExecutor, candidate_is_baseline
from pipeline.pipeline import create_pipeline, user_code_fingerprint
from pipeline.testing.samples import small_config


def _model(artifact_id: int, uri: str) -> standard_artifacts.Model:
    model = standard_artifacts.Model()
    model.id = artifact_id
    model.uri = uri
    return model


def test_fingerprint_changes_with_any_module_and_only_then(tmp_path: Path):
    modules = tmp_path / "modules"
    shutil.copytree(MODULES_DIR, modules, ignore=shutil.ignore_patterns("__pycache__"))
    before = user_code_fingerprint(str(modules / "trainer.py"))
    assert before == user_code_fingerprint(str(MODULES_DIR / "trainer.py"))
    (modules / "notes.txt").write_text("not code")
    assert user_code_fingerprint(str(modules / "trainer.py")) == before
    with open(modules / "model.py", "a") as f:
        f.write("\n")
    assert user_code_fingerprint(str(modules / "trainer.py")) != before


def test_components_import_user_code_and_carry_its_fingerprint(tmp_path: Path):
    config = small_config(tmp_path, tmp_path / "data")
    nodes = {c.id: c for c in create_pipeline(config).components}
    fingerprint = user_code_fingerprint(config.trainer_module)
    expected = {
        "Transform": ("preprocessing_fn", "modules.preprocessing.preprocessing_fn"),
        "Tuner": ("tuner_fn", "modules.tuner.tuner_fn"),
        "Trainer": ("run_fn", "modules.trainer.run_fn"),
    }
    for node_id, (key, path) in expected.items():
        props = nodes[node_id].exec_properties
        assert props[key] == path, node_id
        assert not props.get("module_file"), node_id
        assert f'"user_code": "{fingerprint}"' in props["custom_config"], node_id
    # Transform without its own statistics and analyzer cache by default; TFX's full one on request.
    assert nodes["Transform"].exec_properties["disable_statistics"]
    assert "updated_analyzer_cache" not in nodes["Transform"].outputs
    full = create_pipeline(dataclasses.replace(config, lean_transform=False))
    full_transform = next(c for c in full.components if c.id == "Transform")
    assert not full_transform.exec_properties["disable_statistics"]
    assert "updated_analyzer_cache" in full_transform.outputs


def test_wheel_packaging_stays_available(tmp_path: Path):
    config = small_config(tmp_path, tmp_path / "data", user_code_by_import=False)
    trainer = {c.id: c for c in create_pipeline(config).components}["Trainer"]
    assert trainer.exec_properties["module_file"] == config.trainer_module
    assert not trainer.exec_properties.get("run_fn")


def test_candidate_is_baseline_only_for_the_same_artifact(tmp_path: Path):
    a, b = _model(1, str(tmp_path / "a")), _model(2, str(tmp_path / "b"))
    assert candidate_is_baseline({"model": [a], "baseline_model": [a]})
    assert not candidate_is_baseline({"model": [a], "baseline_model": [b]})
    assert not candidate_is_baseline({"model": [a], "baseline_model": []})
    assert not candidate_is_baseline({"model": [a]})


def test_self_evaluation_records_not_blessed_without_running_tfma(tmp_path: Path):
    model = _model(7, str(tmp_path / "model"))
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(tmp_path / "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)

    SkipSelfEvaluationExecutor().Do(
        {"model": [model], "baseline_model": [model], "examples": []},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {},
    )

    assert tfma.load_validation_result(evaluation.uri).validation_ok is False
    assert not [p for p in os.listdir(evaluation.uri) if p.startswith("metrics")]
    assert os.path.exists(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME))
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_int_custom_property("current_model_id") == 7
    assert blessing.get_int_custom_property("baseline_model_id") == 7


def test_evaluator_is_told_the_model_type_so_tfma_loads_each_model_once(tmp_path: Path):
    from tensorflow_model_analysis.utils import model_util

    from pipeline.pipeline import eval_config

    spec = eval_config(small_config(tmp_path, tmp_path / "data")).model_specs[0]
    assert spec.model_type == tfma.TF_KERAS
    # Given the type, TFMA does not load the model to find it (the path does not even exist);
    # without it, it would try to load the model here.
    assert model_util.get_model_type(spec, str(tmp_path / "no-model")) == tfma.TF_KERAS
    spec.ClearField("model_type")
    assert model_util.get_model_type(spec, str(tmp_path / "no-model")) != tfma.TF_KERAS
