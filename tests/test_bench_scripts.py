"""Every benchmark under bench/ starts the way docs/performance.md shows it, `python
bench/<name>.py` from the project root (a script's sys.path starts at bench/, not the project:
scale_bench.py once failed on its first import that way)."""

import subprocess
import sys

import pytest

from pipeline.config import PROJECT_ROOT

SCRIPTS = sorted(p.name for p in (PROJECT_ROOT / "bench").glob("*.py"))


def test_the_benchmarks_are_found():
    assert {"pipeline_bench.py", "scale_bench.py", "row_cleaning_bench.py"} <= set(SCRIPTS)


@pytest.mark.slow  # each imports TensorFlow or TFX: with the full suite
@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_answers_help_as_a_script(script):
    out = subprocess.run(
        [sys.executable, f"bench/{script}", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout
