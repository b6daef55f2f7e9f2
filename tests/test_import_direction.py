"""Dependencies point one way (README, "Where things live"): runners -> pipeline / serving /
lineage / apps / registry -> model_card -> metadata, modules and model_layout. Parsed from the
source, so a new import that runs the wrong way fails here rather than in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT

PACKAGES = (
    "model_layout",
    "metadata",
    "modules",
    "model_card",
    "pipeline",
    "lineage",
    "serving",
    "runners",
    "apps",
    "registry",
    "mlops",
    "monitoring",
)
UPPER = {"pipeline", "lineage", "serving", "runners", "apps", "registry", "mlops", "monitoring"}
# package -> the project packages it must not import
FORBIDDEN = {
    # The bottom: the serving_model layout imports nothing of the project.
    "model_layout": UPPER | {"metadata", "modules", "model_card"},
    "metadata": UPPER | {"model_card"},
    "modules": UPPER | {"metadata", "model_card"},
    # Model cards: written by the Pusher, read by the registry, so below both of them.
    "model_card": UPPER,
    "pipeline": {"lineage", "serving", "runners", "apps", "registry", "mlops", "monitoring"},
    "lineage": {"pipeline", "serving", "runners", "apps", "registry", "mlops", "monitoring"},
    "serving": {"pipeline", "lineage", "runners", "apps", "registry", "mlops", "monitoring"},
    "apps": {"runners", "mlops"},
    "registry": {"runners", "mlops", "apps"},
    "mlops": {"runners"},
    # the live skew monitor: a feature package over serving/, pipeline/ and metadata/
    "monitoring": {"runners", "mlops", "apps", "registry", "lineage"},
}
# Outside the packages: nothing may import runners/ (entry points, not libraries), and the
# benchmarks import nothing from tests/.
ALSO = {"bench": {"runners", "tests"}, "tests": {"runners"}}
# The runners' own tests exercise their command lines (flags -> config) in-process.
ALLOWED_RUNNER_IMPORTS = {("tests", "test_kubeflow_runner.py"), ("tests", "test_local_runner.py")}
# Known edges against the direction, each limited to one module (path, imported module): none.
# (The Pusher's serving_model layout and model card moved down to model_layout/ and model_card/.)
ALLOWED_EDGES: set[tuple[str, str]] = set()


def _imports(path: Path) -> set[str]:
    """Top-level project packages `path` imports, leaving out its ALLOWED_EDGES."""
    tree = ast.parse(path.read_text(), str(path))
    relative = (
        path.relative_to(PROJECT_ROOT).as_posix() if path.is_relative_to(PROJECT_ROOT) else ""
    )
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    allowed = {m for p, m in ALLOWED_EDGES if p == relative}
    kept = {m for m in modules if not any(m == a or m.startswith(a + ".") for a in allowed)}
    # `from serving import layout` names module `serving` too: drop the parent of an allowed edge.
    kept -= {a.rsplit(".", 1)[0] for a in allowed}
    return {m.split(".")[0] for m in kept}


def _files(top: str) -> list[Path]:
    return sorted((PROJECT_ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("package", sorted({**FORBIDDEN, **ALSO}))
def test_no_import_runs_the_wrong_way(package):
    bad = []
    for path in _files(package):
        if (package, path.name) in ALLOWED_RUNNER_IMPORTS:
            continue
        wrong = _imports(path) & {**FORBIDDEN, **ALSO}[package]
        if wrong:
            bad.append(f"{path.relative_to(PROJECT_ROOT)} imports {sorted(wrong)}")
    # bench/serving_bench.py belongs to the serving work stream, which removes its tests/ import.
    bad = [b for b in bad if not b.startswith("bench/serving_bench.py")]
    assert bad == []


def test_the_checker_sees_imports(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text(
        "import pipeline.config\nfrom lineage import cli\nfrom . import y\n"
        "def f():\n    from serving.client import read_rows\n"
    )
    assert _imports(sample) == {"pipeline", "lineage", "serving"}


def test_no_sys_path_manipulation():
    offenders = [
        str(p.relative_to(PROJECT_ROOT))
        for top in (*PACKAGES, "tests", "bench", "deploy")
        for p in _files(top)
        if "sys.path.insert" in p.read_text() or "sys.path[:0]" in p.read_text()
    ]
    offenders = [
        o
        for o in offenders
        if o not in ("bench/serving_bench.py", Path(__file__).name)
        and not o.endswith("test_import_direction.py")
    ]
    assert offenders == []
