"""Dependencies point one way, down (README, "Where things live"), parsed from the source so a new
import that runs the wrong way fails here rather than in review.

Every project package has a layer; a package imports only packages of lower layers. Feature
packages therefore never import each other (they talk through the bottom layer), and nothing
imports an entry point. The rule has no exceptions: a test for a package lives under
tests/<package>/, and only the runners' own tests (tests/runners/) drive the runners in-process.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.paths import PROJECT_ROOT

LAYERS: dict[str, int] = {
    # the bottom: exit statuses and one-line errors, layouts, the TFX user code and dataset
    # spec, statistics, ML Metadata, the server's client API, model cards (written by the
    # Pusher, read by the registry)
    "cli_support": 0,
    "model_layout": 0,
    "modules": 0,
    "data_stats": 1,
    # per-prediction attributions through any predict callable (the web app's Predict page)
    "explain": 1,
    "metadata": 1,
    "serving_api": 1,
    "model_card": 2,
    # features: each one job, none imports another
    "pipeline": 3,
    "serving": 3,
    "registry": 3,
    "monitoring": 3,
    "lineage": 3,
    "upkeep": 3,
    # entry points: flags -> config -> one call; nothing imports them
    "apps": 4,
    "mlops": 4,
    "runners": 4,
}
FEATURES = {p for p, layer in LAYERS.items() if layer == 3}
ENTRY_POINTS = {p for p, layer in LAYERS.items() if layer == 4}


def _imports(path: Path) -> set[str]:
    """Top-level project packages `path` imports (anywhere in the file, lazy imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return {m.split(".")[0] for m in modules} & set(LAYERS) | (
        {"tests"} if any(m.split(".")[0] == "tests" for m in modules) else set()
    )


def _files(top: str) -> list[Path]:
    return sorted((PROJECT_ROOT / top).rglob("*.py"))


def allowed(importer: str, imported: str) -> bool:
    """May package `importer` import package `imported`?"""
    return imported == importer or LAYERS[imported] < LAYERS[importer]


def test_every_project_package_has_a_layer():
    packages = {p.name for p in PROJECT_ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert packages - {"tests"} == set(LAYERS)


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_import_runs_the_wrong_way(package):
    bad = [
        f"{path.relative_to(PROJECT_ROOT)} imports {sorted(wrong)}"
        for path in _files(package)
        if (wrong := {m for m in _imports(path) if m == "tests" or not allowed(package, m)})
    ]
    assert bad == []


def test_benchmarks_and_tests_use_no_entry_point_but_their_own():
    """bench/ imports no tests/ and no runner; a test imports a runner only under tests/runners/."""
    bad = [
        str(path.relative_to(PROJECT_ROOT))
        for path in _files("bench")
        if _imports(path) & {"tests", "runners"}
    ] + [
        str(path.relative_to(PROJECT_ROOT))
        for path in _files("tests")
        if "runners" in _imports(path) and path.parent.name != "runners"
    ]
    assert bad == []


def test_the_checker_sees_imports(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text(
        "import pipeline.config\nfrom lineage import cli\nfrom . import y\nimport json\n"
        "def f():\n    from serving.client import read_rows\n    from tests.paths import X\n"
    )
    assert _imports(sample) == {"pipeline", "lineage", "serving", "tests"}
    assert not allowed("monitoring", "serving") and not allowed("registry", "pipeline")
    assert allowed("registry", "metadata") and allowed("mlops", "pipeline")
    assert not allowed("apps", "mlops") and not allowed("metadata", "model_card")


def test_no_sys_path_manipulation():
    needles = ("sys.path.insert", "sys.path.append", "sys.path[:0]", "sys.path +=")
    offenders = [
        str(p.relative_to(PROJECT_ROOT))
        for top in (*LAYERS, "tests", "bench", "deploy")
        for p in _files(top)
        if p != Path(__file__) and any(n in p.read_text() for n in needles)
    ]
    assert offenders == []
