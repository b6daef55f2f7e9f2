"""Every benchmark under bench/ starts the way docs/performance.md shows it, `python
bench/<name>.py` from the project root (a script's sys.path starts at bench/, not the project:
scale_bench.py once failed on its first import that way)."""

import subprocess
import sys

import pytest

from tests.paths import PROJECT_ROOT

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


@pytest.mark.slow  # imports TensorFlow
@pytest.mark.parametrize(
    "args", [["--rows", "abc"], ["--rows", "0"], ["--rows", ","], ["--executors", "nope"]]
)
def test_example_gen_bench_refuses_bad_arguments_in_one_line(args):
    out = subprocess.run(
        [sys.executable, "bench/example_gen_bench.py", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "error:" in out.stderr.strip().splitlines()[-1]
