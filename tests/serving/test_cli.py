"""`mlops predict` / `mlops serve` failures: one line on stderr, a distinct exit code per kind of
failure, no traceback unless --debug (cli_support.Exit)."""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import pytest

from cli_support import Exit
from serving import testing as sm
from serving_api import client
from tests import importtime


def _mlops(
    *args: str, stdin: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_clean_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err
    return lines[0]


def test_predict_missing_input_file(tmp_path):
    out = _mlops("predict", f"--input={tmp_path / 'nope.csv'}")
    assert out.returncode == Exit.INPUT_MISSING
    assert "cannot read --input" in _one_clean_line(out.stderr)


@pytest.mark.parametrize("text", ["{not json", "[1, 2, 3]", "[]", ""])
def test_predict_bad_or_empty_input(tmp_path, text):
    path = tmp_path / "rows.json"
    path.write_text(text)
    out = _mlops("predict", f"--input={path}", "--port=1")
    assert out.returncode == Exit.BAD_INPUT, out.stderr[-1500:]
    _one_clean_line(out.stderr)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_predict_unreachable_server(protocol):
    out = _mlops(
        "predict", "--input=-", f"--protocol={protocol}", "--port=1", stdin='{"fare": 1.0}'
    )
    assert out.returncode == Exit.UNREACHABLE
    assert "no server at" in _one_clean_line(out.stderr)


def test_predict_debug_shows_the_traceback(tmp_path):
    out = _mlops("predict", f"--input={tmp_path / 'nope.csv'}", "--debug")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_read_rows_takes_json_from_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"fare": 1.5, "company": "X"}\n'))
    assert client.read_rows("-") == [{"fare": 1.5, "company": "X"}]
    monkeypatch.setattr(sys, "stdin", io.StringIO("fare,company\n1.5,X\n"))
    assert client.read_rows("-") == [{"fare": "1.5", "company": "X"}]


def test_serve_bad_config_is_a_usage_error(tmp_path):
    config = tmp_path / "models.config"
    config.write_text("model_config_list { config { name: 'x' } }")
    out = _mlops("serve", f"--model_config_file={config}")
    assert out.returncode == Exit.FAILED and "Traceback" not in out.stderr
    assert "base_path" in out.stderr


@pytest.mark.parametrize(
    "case, status, text",
    [
        ("bad config", Exit.FAILED, "base_path"),
        ("two model sources", Exit.FAILED, "not both"),
        ("unknown dataset", Exit.FAILED, "no dataset spec"),
        ("workers on port 0", Exit.FAILED, "fixed --port"),
        ("REST port in use", Exit.UNREACHABLE, "cannot bind the REST address"),
        ("gRPC port in use, workers", Exit.UNREACHABLE, "cannot bind the gRPC address"),
        ("no such gRPC host", Exit.UNREACHABLE, "cannot bind the gRPC address 192.0.2.1"),
        # hostile values gRPC would refuse only after loading, or the OS would wrap around
        ("port past 65535", Exit.FAILED, "99999 is not in the range"),
        ("REST port past 65535", Exit.FAILED, "70000 is not in the range"),
        ("empty gRPC host", Exit.UNREACHABLE, "empty (0.0.0.0 is every interface)"),
        ("BOM before the REST host", Exit.UNREACHABLE, "invisible or non-ASCII"),
        ("nested brackets", Exit.UNREACHABLE, "brackets go around an IPv6 literal"),
    ],
)
def test_serve_refuses_before_importing_tensorflow(tmp_path, case, status, text):
    """Flags, config files and both ports are checked before TensorFlow is imported (seconds
    and hundreds of MB): the refusal is the only line on stderr, with no import noise before it."""
    config = tmp_path / "models.config"
    config.write_text("model_config_list { config { name: 'x' } }")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        held = busy.getsockname()[1]
        base = f"--model_base_path={tmp_path / 'taxi'}"
        args = {
            "bad config": [f"--model_config_file={config}"],
            "two model sources": [f"--model_config_file={config}", base],
            "unknown dataset": ["--dataset=no-such-dataset"],
            "workers on port 0": [base, "--workers=2", "--port=0"],
            "REST port in use": [base, f"--port={sm.free_port()}", f"--rest_api_port={held}"],
            "gRPC port in use, workers": [base, f"--port={held}", "--workers=2"],
            "no such gRPC host": [base, "--grpc_host=192.0.2.1", f"--port={sm.free_port()}"],
            "port past 65535": [base, "--port=99999"],
            "REST port past 65535": [base, "--rest_api_port=70000"],
            "empty gRPC host": [base, "--grpc_host="],
            "BOM before the REST host": [base, "--rest_api_host=\ufeff127.0.0.1"],
            "nested brackets": [base, "--grpc_host=[[::1]]", f"--port={sm.free_port()}"],
        }[case]
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "mlops.cli", "serve", *args],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert out.returncode == status, out.stderr[-2000:]
    imported = importtime.imported(out.stderr)
    assert "click" in imported and "tensorflow" not in imported
    lines = importtime.other_lines(out.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], lines


def test_serve_port_in_use_is_one_line(tmp_path):
    sm.build_model(tmp_path / "taxi" / "1")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = _mlops(
            "serve",
            "--model_name=taxi",
            f"--model_base_path={tmp_path / 'taxi'}",
            f"--port={sm.free_port()}",
            f"--rest_api_port={port}",
            "--log_level=ERROR",
        )
    assert out.returncode == Exit.UNREACHABLE, out.stderr[-2000:]
    assert "cannot listen" in _one_clean_line(out.stderr)
