"""`make test` runs `pytest -n 2 --dist loadgroup`: each module's tests (and every user of the
shared small pipeline) must stay on one worker, or each module fixture -- most of them a
pipeline run -- runs once per worker. pytest 9 with pytest-xdist 3.8 broke exactly this
silently (constraints.txt pins pytest 8). Checked with the project's own grouping hook."""

import os
import subprocess
import sys
from pathlib import Path

from tests import conftest
from tests.paths import PROJECT_ROOT

MODULE = """
import os
import pytest


@pytest.fixture(scope="module")
def fixture():
    with open(os.environ["FIXTURE_LOG"], "a") as f:
        f.write(f"{{__name__}} {{os.getpid()}}\\n")


@pytest.mark.parametrize("n", range(4))
def test_{name}(fixture, n):
    pass
"""


def test_each_module_fixture_runs_once_on_two_workers(tmp_path: Path):
    (tmp_path / "conftest.py").write_text(
        "from tests import conftest\n"
        "from tests.conftest import pytest_collection_modifyitems, pytest_configure  # noqa: F401\n"
        'conftest.LONGEST_GROUPS = ("test_delta.py",)\n'
    )
    names = ["alpha", "beta", "gamma", "delta"]
    for name in names:
        (tmp_path / f"test_{name}.py").write_text(MODULE.format(name=name))
    log = tmp_path / "fixtures.log"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"]
        + ["--dist", "loadgroup", "-o", "addopts=", str(tmp_path)],
        cwd=tmp_path,
        env=dict(os.environ, FIXTURE_LOG=str(log), PYTHONPATH=str(PROJECT_ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "16 passed" in out.stdout
    lines = [line.split() for line in log.read_text().splitlines()]
    setups = sorted(name for name, _ in lines)
    assert setups == sorted(f"test_{n}" for n in names), setups  # once each, not per worker
    # A group named in LONGEST_GROUPS starts first (the last, in pytest-xdist's own order).
    first_of_each_worker = {pid: name for name, pid in reversed(lines)}
    assert "test_delta" in first_of_each_worker.values(), lines


def test_the_longest_groups_are_test_modules():
    for group in conftest.LONGEST_GROUPS:
        assert (PROJECT_ROOT / group).is_file(), group
        assert Path(group).name.startswith("test_"), group
