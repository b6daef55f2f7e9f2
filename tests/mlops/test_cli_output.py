"""What `mlops` prints on stderr: the command's one line, not TensorFlow's start-up noise.

`mlops predict` runs as a subprocess (TensorFlow loads in it, as for a user) against a real HTTP
server that answers the way a TF Serving runtime error does: `{"error": ...}` whose text is a
sentence followed by a graph dump."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

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


def _predict(port: int, tmp_path, *flags: str) -> subprocess.CompletedProcess:
    rows = tmp_path / "rows.csv"
    rows.write_text("trip_miles,fare\n1.5,7.25\n")
    quieting = ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")
    env = {k: v for k, v in os.environ.items() if k not in quieting}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "mlops.cli", *flags, "predict", "--input", str(rows)]
        + [f"--port={port}"],
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


def test_verbose_keeps_the_library_output(failing_server, tmp_path):
    out = _predict(failing_server, tmp_path, "--verbose")
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == f"Error: prediction failed: 400: {SENTENCE}"
    # TensorFlow's C++ start-up lines (level 0 shows its INFO lines) or a library warning.
    assert "tensorflow/" in out.stderr or "Warning" in out.stderr, out.stderr
