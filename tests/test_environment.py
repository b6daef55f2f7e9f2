"""The Keras-2 switch has one place (modules/__init__.py), and every way into the project passes
through it before TensorFlow loads: `tf.keras` is tf_keras in each, checked in a fresh
interpreter whose environment does not set the switch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.config import PROJECT_ROOT

IS_TF_KERAS = (
    "import tensorflow as tf, tf_keras; print('TF_KERAS', tf.keras.Model is tf_keras.Model)"
)
# How TFX's executors load a user module given by module_file (in-process and in the container).
LOAD_TRAINER = (
    "from tfx.utils import import_utils; "
    f"run_fn = import_utils.import_func_from_source({str(PROJECT_ROOT / 'modules/trainer.py')!r}, "
    "'run_fn'); import tensorflow as tf; "
    "print('TRAINER_KERAS', run_fn.__globals__['keras'].Model is tf.keras.Model)"
)
CONTAINER_PATH = [str(PROJECT_ROOT), str(PROJECT_ROOT / "deploy" / "pipeline")]

ENTRY_POINTS = {
    # name: (code run first, PYTHONPATH entries)
    "local runner": ("import runners.local_runner", [str(PROJECT_ROOT)]),
    "kubeflow runner": ("import runners.kubeflow_runner", [str(PROJECT_ROOT)]),
    "mlops CLI": ("import mlops.cli", [str(PROJECT_ROOT)]),
    "tests": ("import tests.conftest", [str(PROJECT_ROOT)]),
    "in-process executor (after the runner)": (
        f"import pipeline.run; {LOAD_TRAINER}",
        [str(PROJECT_ROOT)],
    ),
    # The image's command: the KFP entrypoint imports TFX (and TensorFlow) first; the image's
    # sitecustomize (deploy/pipeline, on the image's PYTHONPATH) runs before it.
    "kubeflow container executor": (
        f"import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor; {LOAD_TRAINER}",
        CONTAINER_PATH,
    ),
}


def _start(code: str, path: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = os.pathsep.join(path)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=PROJECT_ROOT / "bench",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    """Every entry point in its own interpreter, all at once (each imports TensorFlow)."""
    procs = {
        name: _start(f"{first}; {IS_TF_KERAS}", path)
        for name, (first, path) in ENTRY_POINTS.items()
    }
    procs["control: TFX without the project"] = _start(
        f"import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor; {IS_TF_KERAS}",
        [],
    )
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        results[name] = out
    return results


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_tf_keras_is_keras_2_in_every_entry_point(outputs, name):
    assert "TF_KERAS True" in outputs[name], outputs[name]
    if "executor" in name:
        assert "TRAINER_KERAS True" in outputs[name], outputs[name]


def test_control_without_the_switch_gets_keras_3(outputs):
    """Without the project's environment TensorFlow picks Keras 3: the checks above can fail."""
    assert "TF_KERAS False" in outputs["control: TFX without the project"]


def test_the_switch_is_set_in_one_place():
    hits = []
    for path in PROJECT_ROOT.rglob("*"):
        if any(p in path.parts for p in (".venv", ".git", "tfx_pipeline_output")):
            continue
        if path.suffix in (".py", ".cfg", ".toml", ".yaml", ".yml", ".sh") or path.name in (
            "Dockerfile",
            "Makefile",
            "run",
        ):
            text = path.read_text(errors="replace")
            if "TF_USE_LEGACY_KERAS" in text:
                hits.append(str(path.relative_to(PROJECT_ROOT)))
    assert sorted(hits) == ["modules/__init__.py", "tests/test_environment.py"], hits
