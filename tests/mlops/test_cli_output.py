"""What `mlops` prints on stderr: the command's one line, not TensorFlow's start-up noise.

`mlops predict` runs as a subprocess, as for a user: over REST against a real HTTP server that
answers the way a TF Serving runtime error does (`{"error": ...}` whose text is a sentence
followed by a graph dump), with no TensorFlow loaded; over gRPC, whose protos load TensorFlow,
against a port where nothing listens."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from tests import importtime
from tests.paths import PROJECT_ROOT

NOISE = ("Unable to register", "FutureWarning", "TF-TRT", "cuda", "oneDNN")
SENTENCE = "Input to reshape is a tensor with 0 values, but the requested shape has 1"
GRAPH_DUMP = SENTENCE + "\n\t [[{{node transform_features_layer/Reshape}}]]\n\t [[StatefulCall]]"


class _TFErrorHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": GRAPH_DUMP}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def failing_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TFErrorHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def _predict(port: int, tmp_path, *flags: str, python: tuple[str, ...] = ()):
    rows = tmp_path / "rows.csv"
    rows.write_text("trip_miles,fare\n1.5,7.25\n")
    quieting = ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")
    env = {k: v for k, v in os.environ.items() if k not in quieting}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    command = [f for f in flags if f == "--verbose"]  # a flag of `mlops` itself
    options = [f for f in flags if f != "--verbose"]
    return subprocess.run(
        [sys.executable, *python, "-m", "mlops.cli", *command, "predict", "--input", str(rows)]
        + [f"--port={port}", *options],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def test_predict_prints_a_server_error_as_one_line_and_no_library_noise(failing_server, tmp_path):
    out = _predict(failing_server, tmp_path)
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [f"Error: prediction failed: 400: {SENTENCE}"], out.stderr
    assert not any(word in out.stderr for word in NOISE)


def test_predict_over_rest_does_not_import_tensorflow(failing_server, tmp_path):
    """Rows become tf.Examples without TensorFlow (serving_api/example_proto.py): no seconds of
    its start-up before the request, as `python -X importtime` shows."""
    out = _predict(failing_server, tmp_path, python=("-X", "importtime"))
    assert out.returncode == 1, out.stderr[-2000:]
    imported = importtime.imported(out.stderr)
    assert "requests" in imported and "tensorflow" not in imported
    assert importtime.other_lines(out.stderr) == [f"Error: prediction failed: 400: {SENTENCE}"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_grpc_predict_loads_tensorflow_and_prints_one_line(tmp_path):
    """gRPC's request protos do load TensorFlow: its start-up lines stay silenced."""
    port = _free_port()
    out = _predict(port, tmp_path, "--protocol=grpc")
    assert out.returncode == 5, out.stderr[-2000:]  # Exit.UNREACHABLE: nothing listens there
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("Error: no server at")
    assert not any(word in out.stderr for word in NOISE)


def test_verbose_keeps_the_library_output(tmp_path):
    out = _predict(_free_port(), tmp_path, "--verbose", "--protocol=grpc")
    assert out.returncode == 5
    assert out.stderr.splitlines()[-1].startswith("Error: no server at")
    # TensorFlow's C++ start-up lines (level 0 shows its INFO lines) or a library warning.
    assert "tensorflow/" in out.stderr or "Warning" in out.stderr, out.stderr
