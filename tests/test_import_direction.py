"""Dependencies point one way (README, "Where things live"): runners -> pipeline / serving /
lineage / apps / registry -> metadata and modules. Parsed from the source, so a new import that
runs the wrong way fails here rather than in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT

PACKAGES = ("metadata", "modules", "pipeline", "lineage", "serving", "runners", "apps",
            "registry", "mlops")
UPPER = {"pipeline", "lineage", "serving", "runners", "apps", "registry", "mlops"}
# package -> the project packages it must not import
FORBIDDEN = {
    "metadata": UPPER,
    "modules": UPPER | {"metadata"},
    "pipeline": {"lineage", "serving", "runners", "apps", "registry", "mlops"},
    "lineage": {"pipeline", "serving", "runners", "apps", "registry", "mlops"},
    "serving": {"pipeline", "lineage", "runners", "apps", "registry", "mlops"},
    "apps": {"runners", "mlops"},
    "registry": {"runners", "mlops", "apps"},
    "mlops": {"runners"},
}
# Outside the packages: nothing may import runners/ (entry points, not libraries), and the
# benchmarks import nothing from tests/.
ALSO = {"bench": {"runners", "tests"}, "tests": {"runners"}}
# The runners' own tests exercise their command lines (flags -> config) in-process.
ALLOWED_RUNNER_IMPORTS = {("tests", "test_kubeflow_runner.py")}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


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
    sample.write_text("import pipeline.config\nfrom lineage import cli\nfrom . import y\n"
                      "def f():\n    from serving.client import read_rows\n")
    assert _imports(sample) == {"pipeline", "lineage", "serving"}


def test_no_sys_path_manipulation():
    offenders = [
        str(p.relative_to(PROJECT_ROOT))
        for top in (*PACKAGES, "tests", "bench", "deploy")
        for p in _files(top)
        if "sys.path.insert" in p.read_text() or "sys.path[:0]" in p.read_text()
    ]
    offenders = [o for o in offenders if o not in ("bench/serving_bench.py", Path(__file__).name)
                 and not o.endswith("test_import_direction.py")]
    assert offenders == []
