"""Every `mlops` subcommand fails the same way (docs/cli.md): a hostile or missing input ends in
the status of its kind from cli_support.Exit and exactly one line on stderr, never a traceback;
with --debug the exception (and its traceback) comes through instead."""

from __future__ import annotations

import socket
import traceback

import pytest
from click.testing import CliRunner

from cli_support import Exit
from mlops.cli import SUBCOMMANDS
from mlops.cli import main as mlops_main

# {tmp}: the test's directory (rows.csv, rows.json holding no JSON, taxi/ with no
# version); {port}: a free port nothing listens on; /nonexistent: a path that does not exist.
INIT = "--datasets-dir {tmp}/ds --data-dir {tmp}/data"
NO_STORE = "--metadata /nonexistent/m.db"
CASES: list[tuple[str, str, Exit]] = [
    ("serve-bad-dataset", "serve --dataset=no_such --port=0", Exit.FAILED),
    ("predict-missing", "predict --input=/nonexistent/rows.csv", Exit.INPUT_MISSING),
    ("predict-not-json", "predict --input={tmp}/rows.json --port=1", Exit.BAD_INPUT),
    ("predict-no-server", "predict --input={tmp}/rows.csv --port={port}", Exit.UNREACHABLE),
    ("lineage-no-store", "lineage -m /nonexistent/m.db runs", Exit.INPUT_MISSING),
    ("add-span-missing", "data add-span /nonexistent/new.csv", Exit.INPUT_MISSING),
    ("add-span-bad-dataset", "data add-span {tmp}/rows.csv --dataset ../../etc", Exit.FAILED),
    ("check-skew-no-log", "data check-skew --requests /nonexistent/log", Exit.INPUT_MISSING),
    ("quarantine-no-store", "data quarantine {no_store}", Exit.INPUT_MISSING),
    (
        "init-missing",
        "dataset init x --from /nonexistent/d.csv --label y {init}",
        Exit.INPUT_MISSING,
    ),
    ("init-not-csv", "dataset init x --from {tmp}/rows.json --label y {init}", Exit.BAD_INPUT),
    (
        "models-refused",
        "models --base-path={tmp}/taxi {no_store} --server= promote 7 --label stable --reason x",
        Exit.REJECTED,
    ),
    ("models-bad-dataset", "models --dataset no_such list", Exit.FAILED),
    ("ui-bad-dataset", "ui --dataset no_such --no-start-server", Exit.FAILED),
    ("monitor-no-log", "monitor --requests /nonexistent/log --once", Exit.INPUT_MISSING),
    ("monitor-bad-flag", "monitor --requests {tmp} --interval soon", Exit.FAILED),
    ("gc-no-store", "gc {no_store}", Exit.INPUT_MISSING),
    ("store-check-no-store", "store check {no_store}", Exit.INPUT_MISSING),
    (
        "store-restore-missing",
        "store restore /nonexistent/b.db --metadata {tmp}/m.db",
        Exit.INPUT_MISSING,
    ),
]
IDS = [case[0] for case in CASES]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def argv_of(tmp_path):
    (tmp_path / "rows.csv").write_text("fare,company\n1.5,X\n")
    (tmp_path / "rows.json").write_text("{not json")
    (tmp_path / "taxi").mkdir()
    port = _free_port()
    where = {"tmp": tmp_path, "port": port}
    return lambda line: (
        line.replace("{init}", INIT).replace("{no_store}", NO_STORE).format(**where).split()
    )


def test_every_subcommand_has_a_hostile_case():
    assert {line.split()[0] for _, line, _ in CASES} == set(SUBCOMMANDS)


@pytest.mark.parametrize("name, argv, status", CASES, ids=IDS)
def test_hostile_input_is_one_line_with_the_kinds_status(argv_of, name, argv, status):
    result = CliRunner().invoke(mlops_main, argv_of(argv))
    assert result.exit_code == status, (name, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), (name, result.stderr)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name, argv, status", CASES, ids=IDS)
def test_debug_shows_the_traceback_instead(argv_of, name, argv, status):
    result = CliRunner().invoke(mlops_main, ["--debug", *argv_of(argv)])
    if name == "monitor-bad-flag":  # a usage error has no traceback: still one line, status 2
        assert result.exit_code == Exit.FAILED and len(result.stderr.splitlines()) == 1
        return
    assert result.exception is not None and not isinstance(result.exception, SystemExit), name
    shown = "".join(traceback.format_exception(*result.exc_info))
    assert shown.startswith("Traceback") and type(result.exception).__name__ in shown
