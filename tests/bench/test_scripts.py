"""Every benchmark under bench/ starts the way docs/performance.md shows it, `python
bench/<name>.py` from the project root (a script's sys.path starts at bench/, not the project:
scale_bench.py once failed on its first import that way)."""

import subprocess
import sys

import pytest

from tests.paths import PROJECT_ROOT

# bench/_*.py are helpers the benchmarks import (bench/_argtypes.py), not benchmarks.
SCRIPTS = sorted(p.name for p in (PROJECT_ROOT / "bench").glob("[!_]*.py"))


def test_the_benchmarks_are_found():
    assert {"pipeline_bench.py", "scale_bench.py", "row_cleaning_bench.py"} <= set(SCRIPTS)


# One process runs each script as `python bench/<name>.py ARGS` would (sys.path[0] = bench/,
# __name__ == "__main__"), so TensorFlow is imported once rather than once per script: for each
# run, the exit status (or the exception that escaped), stdout, and the last line on stderr.
_RUN_ALL = """
import contextlib, io, json, runpy, sys
bench, runs, results = sys.argv[1], json.loads(sys.argv[2]), []
sys.path[0] = bench
for script, args in runs:
    sys.argv = [script, *args]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(f"{bench}/{script}", run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code
    except BaseException as e:
        code = f"{type(e).__name__}: {e}"
    results.append([code, out.getvalue(), (err.getvalue().strip().splitlines() or [""])[-1]])
print(json.dumps(results))
"""


def _run_all(runs: list[tuple[str, list[str]]]) -> list[tuple[object, str, str]]:
    """`_RUN_ALL` over (script, args) pairs; one result per run, in order."""
    import json

    out = subprocess.run(
        [sys.executable, "-c", _RUN_ALL, str(PROJECT_ROOT / "bench"), json.dumps(runs)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(results) == len(runs)
    return results


@pytest.mark.slow  # imports TensorFlow and TFX
def test_each_benchmark_answers_help_as_a_script():
    results = dict(zip(SCRIPTS, _run_all([(name, ["--help"]) for name in SCRIPTS]), strict=True))
    failed = {name: code for name, (code, _, _) in results.items() if code != 0}
    assert failed == {}
    assert all("usage:" in text for _, text, _ in results.values())


@pytest.mark.slow  # imports TensorFlow
@pytest.mark.parametrize(
    "args",
    [
        ["--rows", "abc"],
        ["--rows", "0"],
        ["--rows", ","],
        ["--executors", "nope"],
        ["--beam-mode", "nope"],
    ],
)
def test_example_gen_bench_refuses_bad_arguments_in_one_line(args):
    _refused_in_one_line("example_gen_bench.py", args)


@pytest.mark.slow  # imports TensorFlow
@pytest.mark.parametrize(
    "args",
    [
        ["--rounds", "0"],
        ["--rounds", "-1"],
        ["--rounds", "1e9"],
        ["--rows", "\ufeff100"],
        ["--executors", "stock;ours"],
        ["--beam-mode", "in_memory"],
    ],
)
def test_transform_bench_refuses_bad_arguments_in_one_line(args):
    _refused_in_one_line("transform_bench.py", args)


@pytest.mark.parametrize(
    "args",
    [
        ["--rows", "abc"],
        ["--rows", "0"],
        ["--modes", "nope"],
        ["--modes", "auto+warm"],
        ["--modes", ""],
        ["--modes", "+cold"],
        ["--modes", "auto,auto"],
    ],
)
def test_scale_bench_refuses_bad_arguments_in_one_line(args):
    _refused_in_one_line("scale_bench.py", args)


# Hostile values for every other benchmark's flags; each used to end in a traceback after
# minutes of set-up (a median of nothing, a division by zero) or to run and print figures of
# nothing (--connections 0, --rows -1, an unknown --shifts name, --scale-rows abc after the
# template run). serving_bench.py's are in tests/serving/test_serving_bench_args.py.
HOSTILE = [
    ("serving_profile.py", "--connections", "0"),
    ("serving_profile.py", "--duration", "nan"),
    ("serving_profile.py", "--warmup", "-1"),
    ("serving_profile.py", "--client_cpus", "x"),
    ("serving_profile.py", "--client_cpus", "4096"),
    ("warmup_bench.py", "--rounds", "0"),
    ("warmup_bench.py", "--steady", "-5"),
    ("ui_bench.py", "--runs", "0"),
    ("ui_bench.py", "--repeats", "abc"),
    ("row_cleaning_bench.py", "--rows", "0"),
    ("row_cleaning_bench.py", "--bad", "2"),
    ("row_cleaning_bench.py", "--bad", "nan"),
    ("row_cleaning_bench.py", "--duplicates", "-0.1"),
    ("row_cleaning_bench.py", "--shards", "0"),
    ("sources_bench.py", "--rows", "-1"),
    ("sources_bench.py", "--partitions", "0"),
    ("drift_calibration.py", "--samples", "0"),
    ("drift_calibration.py", "--shifted-samples", "x"),
    ("drift_calibration.py", "--sizes", "0"),
    ("drift_calibration.py", "--seed", "-1"),
    ("drift_calibration.py", "--shifts", "nope"),
    ("pipeline_bench.py", "--scale-rows", "0"),
    ("pipeline_bench.py", "--scale-rows", "abc"),
    ("evaluator_bench.py", "--rows", "0"),
    ("evaluator_bench.py", "--evaluators", "tfma,nope"),
    ("beam_fixed_cost_bench.py", "--rows", "0"),
    ("beam_fixed_cost_bench.py", "--rows", "10000000"),
    ("beam_fixed_cost_bench.py", "--rounds", "0"),
    ("beam_fixed_cost_bench.py", "--rounds", "nan"),
]


@pytest.mark.slow  # imports TensorFlow and TFX
def test_every_benchmark_refuses_hostile_values_in_one_line():
    results = _run_all([(script, [f"{flag}={value}"]) for script, flag, value in HOSTILE])
    wrong = {
        f"{script} {flag}={value}": (code, last)
        for (script, flag, value), (code, _, last) in zip(HOSTILE, results, strict=True)
        if code != 2 or f"error: argument {flag}" not in last
    }
    assert wrong == {}


def _refused_in_one_line(script: str, args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "error:" in out.stderr.strip().splitlines()[-1]
