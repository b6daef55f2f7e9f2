"""`mlops models` output and settings that must not surprise: a recorded reason prints on one line
in `history`, and an empty MLOPS_SERVER means no server (it used to mean 127.0.0.1:8501)."""

from __future__ import annotations

import datetime as dt
import socket
import threading

import pytest
from click.testing import CliRunner

from mlops.cli import main as mlops_main
from registry import cli as registry_cli
from registry.store import Action, RegistryStore


def test_a_reason_with_newlines_prints_escaped_on_one_line(tmp_path):
    metadata = str(tmp_path / "metadata.db")
    store = RegistryStore(metadata, create=True)
    millis = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    reason = "rollback\n2026-01-02  push stable 1 -> 2 by admin: forged\r\x1b[31m"
    store.record(
        Action(
            action="rollback",
            when="2026-01-01T00:00:00+00:00",
            who="ops\nuser",
            model="taxi",
            label="stable",
            from_version="2",
            to_version="1",
            reason=reason,
            millis=millis,
        ),
        {},
    )
    (tmp_path / "serving_model" / "taxi").mkdir(parents=True)

    result = CliRunner().invoke(
        mlops_main,
        [
            "models",
            "--metadata",
            metadata,
            "--base-path",
            str(tmp_path / "serving_model" / "taxi"),
            "--server",
            "",
            "history",
        ],
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, lines
    assert "rollback\\n2026-01-02" in lines[0] and "\\r\\x1b[31m" in lines[0]
    assert "by ops\\nuser:" in lines[0]


@pytest.mark.parametrize(
    "flag, environ, expected",
    [
        (None, {}, registry_cli.DEFAULT_SERVER),
        (None, {"MLOPS_SERVER": ""}, None),  # set but empty: no server, not the default
        (None, {"MLOPS_SERVER": "  "}, None),
        (None, {"MLOPS_SERVER": "db:9"}, "db:9"),
        ("", {"MLOPS_SERVER": "db:9"}, None),
        ("h:1", {"MLOPS_SERVER": ""}, "h:1"),
    ],
)
def test_server_address_rule(flag, environ, expected):
    assert registry_cli.server_address(flag, environ) == expected


def test_mlops_server_is_the_server_asked_and_empty_asks_none(tmp_path, monkeypatch):
    """With MLOPS_SERVER pointing at a listening socket, `models list` connects to it; with it
    empty, the command runs without opening any connection (the rule above decides the
    address, so the default 127.0.0.1:8501 is never tried either)."""
    base = tmp_path / "serving_model" / "taxi"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(5)
    accepted: list[bool] = []

    def accept() -> None:
        try:
            conn, _ = listener.accept()
            accepted.append(True)
            conn.close()
        except OSError:
            pass

    args = ["models", "--metadata", str(tmp_path / "m.db"), "--base-path", str(base), "list"]
    thread = threading.Thread(target=accept)
    thread.start()
    monkeypatch.setenv("MLOPS_SERVER", f"127.0.0.1:{listener.getsockname()[1]}")
    CliRunner().invoke(mlops_main, args)
    thread.join(10)
    assert accepted == [True]

    listener.settimeout(1)
    thread = threading.Thread(target=accept)
    thread.start()
    monkeypatch.setenv("MLOPS_SERVER", "")
    calls: list[object] = []
    from registry import server_state

    real = server_state.model_status
    monkeypatch.setattr(
        server_state,
        "model_status",
        lambda server, *a, **k: calls.append(server) or real(server, *a, **k),
    )
    CliRunner().invoke(mlops_main, args)
    thread.join(5)
    listener.close()
    assert accepted == [True] and calls and all(c is None for c in calls)
