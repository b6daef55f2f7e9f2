"""End to end in a real headless Chromium: `mlops ui` on a free port, the predict form filled and
submitted, the probability read off the page, then every page opened by its URL and the dataset
switched in the sidebar, each checked against what this test reads itself (driven over the
Chrome DevTools Protocol)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import websocket  # websocket-client (already in the TFX stack via kubernetes)

from apps.ui import data
from apps.ui.app import PAGES
from data_stats.missing import presence
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


# Label -> value of every st.metric on the page.
_METRICS_JS = (
    "Object.fromEntries([...document.querySelectorAll('[data-testid=\"stMetric\"]')]"
    ".map(m => [m.querySelector('[data-testid=\"stMetricLabel\"]').innerText.trim(),"
    " m.querySelector('[data-testid=\"stMetricValue\"]').innerText.trim()]))"
)


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

    def click(self, element_js: str) -> None:
        """A real mouse click (pointer events) in the middle of the element `element_js` finds."""
        x, y = self.js(
            f"(function(){{var e = {element_js}; e.scrollIntoView({{block: 'center'}});"
            " var r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2];})()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def open(self, url: str, title: str) -> str:
        """Load `url` as a user typing it; wait for the page's title; return the page's text."""
        self.send("Page.navigate", url=url)
        return self.wait_page(title)

    def wait_page(self, title: str) -> str:
        self.wait_for(
            f"(document.querySelector('h1') || {{}}).innerText === {json.dumps(title)}"
            " && !document.querySelector('[data-testid=\"stSkeleton\"]')"
        )
        return self.js("document.body.innerText")

    def metrics(self) -> dict[str, str]:
        return self.js(_METRICS_JS)

    def choose_dataset(self, name: str) -> None:
        """Pick `name` in the sidebar's Dataset box, as a user: open it, click the option."""
        self.click(
            'document.querySelector(\'[data-testid="stSidebar"] [data-testid="stSelectbox"]'
            ' button[aria-label="Open"]\')'
        )
        option = (
            "[...document.querySelectorAll('[role=\"option\"]')]"
            f".find(o => o.innerText.trim() === {json.dumps(name)})"
        )
        self.wait_for(f"!!{option}", timeout=30)
        self.click(option)
        self.wait_for(f"location.search.includes('dataset={name}')", timeout=60)

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
        baseline = data.baseline_row(fields)
        row = baseline | {"trip_miles": 3.5}
        expected = predict_rows(RestClient("127.0.0.1", rest_port), "taxi", [row])[0]
        assert float(shown) == pytest.approx(expected["probabilities"][0], abs=1e-4)
        # The attributions below it: from the baseline row (the form's defaults) to this row,
        # adding up to the change of the probability.
        browser.wait_for("document.body.innerText.includes('Why: attributions')")
        browser.wait_for("Object.keys(" + _METRICS_JS + ").includes('Sum of attributions')")
        explained = browser.metrics()
        at_baseline = predict_rows(RestClient("127.0.0.1", rest_port), "taxi", [baseline])[0]
        change = expected["probabilities"][0] - at_baseline["probabilities"][0]
        assert float(explained["Prediction"]) == pytest.approx(float(shown), abs=1e-4)
        assert float(explained["Sum of attributions"]) == pytest.approx(change, abs=2e-4)
        nav = browser.js("document.querySelector('[data-testid=\"stSidebarNav\"]').innerText")
        assert nav.split() == ["Predict", "Runs", "Models", "Data", "Serving"], nav
        answered = browser.js("document.body.innerText")
        assert "answered by version" in answered and "REST" in answered
        assert "Page not found" not in answered
        assert shot.stat().st_size > 10_000
        _every_page_by_url_and_dataset_switch(browser, url, small_pipeline)
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


def _every_page_by_url_and_dataset_switch(browser: Browser, url: str, small_pipeline) -> None:
    """Each page opened by its own URL in a fresh load (no "Page not found"), its values checked
    against ML Metadata and the artifacts; then the sidebar's dataset switch."""
    from metadata import open_store

    report = small_pipeline.report
    pipeline = small_pipeline.config.pipeline_name
    version = os.path.basename(report.pushed_path.rstrip("/"))
    texts = {}
    for _script, title, path in PAGES:
        texts[path] = browser.open(f"{url}/{path}", title)
        assert "Page not found" not in texts[path], path
        assert browser.js("location.pathname") == f"/{path}"
    assert "Model taxi on the model server" in texts["predict"]

    browser.open(f"{url}/runs", "Runs")
    assert f"Pipeline {pipeline} in the metadata store" in browser.js("document.body.innerText")
    run = open_store(small_pipeline.metadata_path).runs(pipeline)[0]  # the page's default run
    shown = browser.wait_for(
        "(function(){var m = document.querySelectorAll('[data-testid=\"stMetricValue\"]');"
        " return m.length >= 4 && [...m].map(e => e.innerText.trim());})()"
    )
    assert shown[:2] == [run.status, str(report.span)], shown
    assert run.status == "complete"

    browser.open(f"{url}/models", "Models")
    browser.wait_for("document.body.innerText.includes('Pushed version')")
    assert browser.metrics()["Pushed version"] == version
    assert small_pipeline.serving_model_dir in browser.js("document.body.innerText")
    graph_svg = "[...document.querySelectorAll('svg')].find(s => s.querySelector('.node'))"
    browser.wait_for(f"!!{graph_svg}")  # the lineage graph, drawn
    assert browser.js(f"{graph_svg}.textContent.includes('Pusher')")

    text = browser.open(f"{url}/data", "Data")
    text = browser.wait_for(
        "document.body.innerText.includes('Most missing') && document.body.innerText"
    )
    assert f"as ingested by run {report.run_id}" in text
    stats = _train_statistics(small_pipeline)
    tract = presence(stats["pickup_census_tract"])
    assert tract.missing > 0.99 * (tract.present + tract.missing)  # ~all blank, not 0
    assert f"pickup_census_tract {tract.missing:,} of {tract.present + tract.missing:,}" in text, (
        text
    )

    browser.open(f"{url}/serving", "Serving")
    browser.wait_for("document.body.innerText.includes('Requests (since start)')")
    assert int(browser.metrics()["Requests (since start)"]) >= 1  # the prediction above

    # The switcher: on Runs, pick penguins; the page reads penguins' pipeline, and a sidebar link
    # keeps the choice; a URL with ?dataset= opens a page on that dataset.
    browser.open(f"{url}/runs", "Runs")
    browser.choose_dataset("penguins")
    browser.wait_for("document.body.innerText.includes('Pipeline penguins_pipeline')", timeout=60)
    # The caption comes first; the error box replaces the taxi run's stale elements after it.
    browser.wait_for(
        "document.body.innerText.includes(\"no runs of pipeline 'penguins_pipeline'\")",
        timeout=60,
    )
    browser.click(
        "[...document.querySelectorAll('[data-testid=\"stSidebarNavLink\"]')]"
        ".find(a => a.innerText.trim() === 'Predict')"
    )
    browser.wait_for("document.body.innerText.includes('Model penguins on the model server')")
    text = browser.open(f"{url}/models?dataset=penguins", "Models")
    browser.wait_for("document.body.innerText.includes('no model has been pushed')")
    penguins_dir = os.path.join(os.path.dirname(small_pipeline.serving_model_dir), "penguins")
    assert penguins_dir in browser.js("document.body.innerText")
    browser.choose_dataset("taxi")
    browser.wait_for("document.body.innerText.includes('Pushed version')", timeout=60)
    assert browser.metrics()["Pushed version"] == version


def _train_statistics(small_pipeline) -> dict:
    """The fixture run's train-split statistics per feature (common statistics)."""
    from data_stats.compare import load_statistics_file
    from metadata import open_store

    store = open_store(small_pipeline.metadata_path)
    [span] = [
        s
        for s in store.spans(small_pipeline.config.pipeline_name)
        if s.run_id == small_pipeline.report.run_id
    ]
    proto = load_statistics_file(
        os.path.join(span.statistics_uri, "Split-train", "FeatureStats.pb")
    )
    out = {}
    for f in proto.datasets[0].features:
        kind = f.WhichOneof("stats")
        out[".".join(f.path.step)] = getattr(f, kind).common_stats
    return out
