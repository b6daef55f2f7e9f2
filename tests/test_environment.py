"""The Keras-2 switch has one place (modules/__init__.py), and every way into the project passes
through it before TensorFlow loads, checked in fresh interpreters whose environment does not set
the switch.

An entry point passes when, right after importing it, the switch is set and TensorFlow is not
loaded yet (so `tf.keras` will be tf_keras), or TensorFlow is loaded and `tf.keras` is tf_keras.
The TFX executor paths import TensorFlow for real, so they are the slow part.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import PROJECT_ROOT

VERDICT = (
    "import os, sys\n"
    "if 'tensorflow' in sys.modules:\n"
    "    import tensorflow as tf, tf_keras\n"
    "    print('KERAS2', tf.keras.Model is tf_keras.Model)\n"
    "else:\n"
    "    print('KERAS2', os.environ.get('TF_USE_LEGACY_KERAS') == '1')\n"
)
# How TFX's executors load a user module given by module_file (in-process and in the container).
LOAD_TRAINER = (
    "from tfx.utils import import_utils\n"
    f"run_fn = import_utils.import_func_from_source({str(PROJECT_ROOT / 'modules/trainer.py')!r},"
    " 'run_fn')\n"
    "import tensorflow as tf\n"
    "print('TRAINER_KERAS2', run_fn.__globals__['keras'].Model is tf.keras.Model)\n"
)
ROOT = [str(PROJECT_ROOT)]
# The image's PYTHONPATH: the repository and deploy/pipeline's sitecustomize.
IMAGE_PATH = [str(PROJECT_ROOT), str(PROJECT_ROOT / "deploy" / "pipeline")]

ENTRY_POINTS = {
    # name: (code run first, PYTHONPATH)
    "local runner": ("import runners.local_runner\n", ROOT),
    "kubeflow runner": ("import runners.kubeflow_runner\n", ROOT),
    "mlops CLI": ("import mlops.cli\n", ROOT),
    "tests": ("import tests.conftest\n", ROOT),
}
EXECUTORS = {
    # Packages that import TensorFlow at the top: the switch is set before.
    "pipeline package": ("import pipeline.validation.drift\n", ROOT),
    "user module": ("import modules.trainer\n" + LOAD_TRAINER, ROOT),
    # In-process: the runner has imported the project before LocalDagRunner loads module files.
    "in-process executor": ("import pipeline.local.run\n" + LOAD_TRAINER, ROOT),
    # The image's command: the KFP entrypoint imports TFX (and TensorFlow) first; the image's
    # sitecustomize runs before it.
    "kubeflow container executor": (
        "import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor\n" + LOAD_TRAINER,
        IMAGE_PATH,
    ),
    "control: TFX without the project": (
        "import tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor\n",
        [],
    ),
}


def _run_all(cases: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
    """Each case in its own interpreter, all at once; name -> stdout."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    procs = {}
    for name, (first, path) in cases.items():
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", first + VERDICT],
            env={**env, "PYTHONPATH": os.pathsep.join(path)},
            # Not the root: only PYTHONPATH makes the project importable.
            cwd=PROJECT_ROOT / "bench",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        results[name] = out
    return results


@pytest.fixture(scope="module")
def entry_points() -> dict[str, str]:
    return _run_all(ENTRY_POINTS)


@pytest.fixture(scope="module")
def executors() -> dict[str, str]:
    return _run_all(EXECUTORS)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_every_entry_point_sets_the_switch_before_tensorflow(entry_points, name):
    assert "KERAS2 True" in entry_points[name], entry_points[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in EXECUTORS if not n.startswith("control")])
def test_user_modules_get_tf_keras_in_every_executor_path(executors, name):
    assert "KERAS2 True" in executors[name], executors[name]
    if "LOAD" in name or "executor" in name or "module" in name:
        assert "TRAINER_KERAS2 True" in executors[name], executors[name]


@pytest.mark.slow
def test_control_without_the_project_gets_keras_3(executors):
    """Without the project's environment TensorFlow picks Keras 3: the checks above can fail."""
    assert "KERAS2 False" in executors["control: TFX without the project"]


SETS_THE_SWITCH = re.compile(r"""TF_USE_LEGACY_KERAS["']?\s*[,=:]\s*["']?(1|true|True)\b""")


def test_the_switch_is_set_in_one_place():
    """Set (not just mentioned: tests remove it from child environments) in modules/ only."""
    hits = []
    skipped = {".venv", ".git", "tfx_pipeline_output", "serving_model", "__pycache__"}
    for root, dirs, files in os.walk(PROJECT_ROOT):
        dirs[:] = [d for d in dirs if d not in skipped]  # never walk the venv's 100k files
        for path in (Path(root) / f for f in files):
            if path == Path(__file__):
                continue
            if path.suffix in (".py", ".cfg", ".toml", ".yaml", ".yml", ".sh") or path.name in (
                "Dockerfile",
                "Makefile",
                "run",
            ):
                if SETS_THE_SWITCH.search(path.read_text(errors="replace")):
                    hits.append(str(path.relative_to(PROJECT_ROOT)))
    assert hits == ["modules/__init__.py"]
    assert SETS_THE_SWITCH.search("ENV TF_USE_LEGACY_KERAS=1")
    assert SETS_THE_SWITCH.search('os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")')
    assert SETS_THE_SWITCH.search('dict(os.environ, TF_USE_LEGACY_KERAS="1")')


def _fresh_interpreter(code: str) -> subprocess.CompletedProcess:
    """`code` in a new Python with the project on its path, run from bench/ (so nothing is
    imported from the working directory by accident)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(ROOT)},
        cwd=PROJECT_ROOT / "bench",
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # imports all of TFX (~15 s): with the full suite
def test_importing_tfx_scans_the_installed_distributions_once():
    """google-api-core asks importlib.metadata.packages_distributions() once per Google package
    TFX loads (a full scan of site-packages each time); modules/__init__.py keeps one answer."""
    code = (
        "import runners.local_runner\n"
        "from tfx import v1\n"
        "import importlib.metadata as m\n"
        "info = m.packages_distributions.cache_info()\n"
        "print(info.hits, info.misses)\n"
    )
    out = _fresh_interpreter(code)
    assert out.returncode == 0, out.stderr[-3000:]
    hits, misses = map(int, out.stdout.split()[-2:])
    assert misses == 1 and hits >= 5, out.stdout  # the scans TFX's import asked for, answered once


@pytest.mark.slow  # imports TFX's components (~10 s): with the full suite
def test_the_local_run_imports_neither_google_clouds_ai_platform_nor_an_iri_grammar():
    """A local run reaches TFX's components through their own modules, not `tfx.v1`, whose
    extensions import google.cloud.aiplatform (4-7 s), and marks jsonschema's optional IRI
    grammar absent (2.6-3.1 s); jsonschema still checks the formats it has."""
    code = (
        "import sys\n"
        "import runners.local_runner\n"
        "from pipeline.config import PipelineConfig\n"
        "from pipeline.pipeline import create_pipeline\n"
        "import modules.trainer, modules.tuner\n"
        "from pipeline.local import run\n"
        "create_pipeline(PipelineConfig())\n"
        "import jsonschema\n"
        "checker = jsonschema.Draft202012Validator.FORMAT_CHECKER\n"
        "print('LOADED', sorted(m for m in ('google.cloud.aiplatform', 'tfx.v1', "
        "'rfc3987_syntax') if sys.modules.get(m) is not None))\n"
        "print('DATE', checker.conforms('2026-12-07', 'date'), "
        "checker.conforms('2026-13-07', 'date'))\n"
    )
    out = _fresh_interpreter(code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED []" in out.stdout, out.stdout
    assert "DATE True False" in out.stdout, out.stdout
