"""End to end in a real headless Chromium: `mlops ui` on a free port, the predict form filled and
submitted, the probability read off the page (driven over the Chrome DevTools Protocol)."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import websocket  # websocket-client (already in the TFX stack via kubernetes)

from apps.ui import data
from serving_api.client import RestClient, predict_rows
from tests import serving_models as sm

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1400,1800",
]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout}s")


class Browser:
    """A headless Chromium and one page target, spoken to over CDP."""

    def __init__(self, url: str, profile: Path) -> None:
        assert CHROMIUM, "chromium is not installed (apt-get install chromium; .ci/run does)"
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                *CHROME_FLAGS,
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30)
        self.ids = itertools.count(1)

    def send(self, method: str, **params) -> dict:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message["result"]

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(f"page never satisfied: {expression}")

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def test_mlops_ui_starts_server_and_predicts_in_a_real_browser(small_pipeline, tmp_path):
    """The documented one command: `mlops ui` finds no model server, starts one on the pushed
    model, and the app predicts through it."""
    assert small_pipeline.exit_code == 0
    rest_port, grpc_port, app_port = sm.free_port(), sm.free_port(), sm.free_port()
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlops.cli",
            "ui",
            f"--port={app_port}",
            f"--metadata={small_pipeline.metadata_path}",
            f"--pipeline-name={small_pipeline.config.pipeline_name}",
            f"--serving-dir={small_pipeline.serving_model_dir}",
            f"--rest-port={rest_port}",
            f"--grpc-port={grpc_port}",
        ],
        stdout=open(tmp_path / "app.log", "wb"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
    )
    browser = None
    try:
        url = f"http://127.0.0.1:{app_port}"
        _wait_http(url + "/_stcore/health", app)
        _wait_http(f"http://127.0.0.1:{rest_port}/v1/models/taxi", app)
        browser = Browser(url + "/", tmp_path / "chromium-profile")  # Predict is the home page
        browser.wait_for("document.querySelector('input[aria-label=\"trip_miles\"]') !== null")
        # Type into the field like a user: focus, select the old value, insert text.
        browser.js(
            "var e = document.querySelector('input[aria-label=\"trip_miles\"]');"
            " e.focus(); e.select(); true"
        )
        browser.send("Input.insertText", text="3.5")
        browser.wait_for(
            "parseFloat(document.querySelector('input[aria-label=\"trip_miles\"]').value) === 3.5",
            timeout=30,
        )
        browser.js("document.activeElement.blur(); true")
        browser.wait_for(
            "[...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Predict')"
        )
        browser.js(
            "[...document.querySelectorAll('button')]"
            ".find(b => b.innerText.trim() === 'Predict').click(); true"
        )
        shown = browser.wait_for(
            "(document.querySelector('[data-testid=\"stMetricValue\"]') || {}).innerText"
        )
        png = browser.send("Page.captureScreenshot", format="png")["data"]
        shot = tmp_path / "predict.png"
        shot.write_bytes(base64.b64decode(png))
        print(f"screenshot: {shot}")
        fields = data.form_fields.__wrapped__(
            small_pipeline.metadata_path, small_pipeline.config.pipeline_name
        )
        row = {f.name: f.default for f in fields} | {"trip_miles": 3.5}
        expected = predict_rows(RestClient("127.0.0.1", rest_port), "taxi", [row])[0]
        assert float(shown) == pytest.approx(expected["probabilities"][0], abs=1e-4)
        nav = browser.js("document.querySelector('[data-testid=\"stSidebar\"]').innerText")
        assert nav.split() == ["Predict", "Runs", "Models", "Data", "Serving"], nav
        answered = browser.js("document.body.innerText")
        assert "answered by version" in answered and "REST" in answered
        assert "Page not found" not in answered
        assert shot.stat().st_size > 10_000
    finally:
        if browser is not None:
            browser.close()
        app.terminate()
        try:
            app.wait(timeout=20)
        except subprocess.TimeoutExpired:
            app.kill()
        assert "No model server answers; starting one" in (tmp_path / "app.log").read_text()
        with pytest.raises(OSError):  # the server it started stopped with it
            urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/taxi", timeout=2)
