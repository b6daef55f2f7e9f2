"""One-line failures and the one exit-status table every command uses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cli_support
from cli_support import CommandError, Exit, handle_errors
from tests.paths import PROJECT_ROOT


@given(st.text())
def test_any_message_prints_as_exactly_one_line(message):
    line = cli_support.one_line(message)
    assert line and len((line + "\n").splitlines()) == 1


def test_expected_failure_is_one_line_with_its_status(capsys):
    @handle_errors(debug=lambda: False)
    def command():
        raise CommandError("no server at 127.0.0.1:1\n  (connection refused)", Exit.UNREACHABLE)

    with pytest.raises(SystemExit) as exit_:
        command()
    assert exit_.value.code == Exit.UNREACHABLE == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: no server at 127.0.0.1:1")


def test_unexpected_failure_names_its_type_and_the_debug_flag(capsys):
    @handle_errors(debug=lambda: False)
    def command():
        return {}["missing"]

    with pytest.raises(SystemExit) as exit_:
        command()
    assert exit_.value.code == Exit.FAILED
    err = capsys.readouterr().err
    assert "KeyError" in err and "--debug" in err and "Traceback" not in err


def test_debug_lets_the_exception_through():
    @handle_errors(debug=lambda: True)
    def command():
        raise CommandError("refused", Exit.REJECTED)

    with pytest.raises(CommandError):
        command()


def test_the_table_is_documented_once_in_docs_cli():
    """docs/cli.md lists every status with its number; no other doc restates the table."""
    doc = (PROJECT_ROOT / "docs" / "cli.md").read_text()
    for status in Exit:
        assert f"| {status.value} | `{status.name}`" in doc, status
