"""The monitoring stack, for real: promtool checks the config and unit-tests the alert rules; a
real Prometheus (Debian's package) scrapes a real model server process, records the per-version
series and evaluates the alerts; every PromQL query of the Grafana dashboard runs against it."""

from __future__ import annotations

# First: until tests/ has an __init__.py, a regular `tests` package that a later import puts on
# sys.path (IPython's extensions/tests) would shadow this directory.
from tests.serving_models import (  # isort: split
    SAMPLE_ROW,
    ServerProcess,
    build_model,
    free_port,
    make_example,
)

import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from monitoring.skew_exporter import SKEW_DISTANCE_METRIC, SKEW_THRESHOLD_METRIC
from serving.metrics import SCORE_BUCKETS
from tests.paths import PROJECT_ROOT

MONITORING = PROJECT_ROOT / "deploy" / "monitoring"
PROMETHEUS_YML = MONITORING / "prometheus.yml"
ALERTS = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
K8S_PROMETHEUS_YML = MONITORING / "prometheus-kubernetes.yml"
MODEL = "taxi"
JOB = "model-server"

APT_HINT = "apt-get install -y --no-install-recommends prometheus (.ci/run does it)"


def _binary(name: str) -> str:
    """Debian's prometheus package provides both; like PostgreSQL, a missing one is an error."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found; install it with: {APT_HINT}")
    return path


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_binary("promtool"), *args], capture_output=True, text=True, timeout=120)


# --- promtool -------------------------------------------------------------------------------------


def test_prometheus_config_and_rules_pass_promtool():
    checked = _promtool("check", "config", str(PROMETHEUS_YML))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and "rules found" in checked.stdout


def test_alert_rules_unit_tests_pass():
    result = _promtool("test", "rules", str(MONITORING / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_catch_a_wrong_expectation(tmp_path):
    """The rule tests can fail: a changed threshold breaks them."""
    shutil.copy(MONITORING / "alerts_test.yml", tmp_path / "alerts_test.yml")
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text().replace("> 0.05", "> 0.5"))
    result = _promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert result.returncode != 0 and "ModelServerErrorRatioHigh" in result.stdout + result.stderr


def _alerts() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                out.setdefault(rule["alert"], []).append(rule)
    return out


def test_the_alerts_the_rollout_needs_exist_on_the_per_version_metrics():
    alerts = _alerts()
    assert set(alerts) == {
        "ModelServerDown",
        "ModelServerErrorRatioHigh",
        "ModelServerP99LatencyHigh",
        "CanaryWorseThanStable",
        "LiveFeatureSkewHigh",
        "SkewMonitorNotChecking",
    }
    assert {r["labels"]["signal"] for r in alerts["CanaryWorseThanStable"]} == {
        "errors",
        "p99_latency",
        "prediction_shift",
    }
    for rule in alerts["CanaryWorseThanStable"]:
        assert 'label="canary"' in rule["expr"] and 'label="stable"' in rule["expr"]
    (skew,) = alerts["LiveFeatureSkewHigh"]
    # The threshold comes from the exported metric (the schema's), not a number in the rule.
    assert SKEW_DISTANCE_METRIC in skew["expr"] and SKEW_THRESHOLD_METRIC in skew["expr"]
    assert not re.search(r"\d", skew["expr"].replace("model_name", ""))
    for rules in alerts.values():
        for rule in rules:
            assert (
                rule["labels"]["severity"] in ("page", "ticket") and rule["annotations"]["summary"]
            )


def test_kubernetes_prometheus_config_discovers_the_annotated_serving_pods(tmp_path):
    """Debian's promtool lacks Kubernetes discovery, so: the rest of the file passes promtool
    with a static target in its place, and its relabeling (Prometheus' anchored regexes) turns
    the serving pod's annotations into the scrape target and path."""
    config = yaml.safe_load(K8S_PROMETHEUS_YML.read_text())
    job = _job(config, JOB)  # the skew-monitor job: tests/monitoring/test_skew_monitor.py
    assert job["job_name"] == JOB and job["kubernetes_sd_configs"] == [{"role": "pod"}]
    assert config["rule_files"] == ["alerts.yml"]
    static = {**job, "static_configs": [{"targets": ["10.0.0.7:8080"]}]}
    del static["kubernetes_sd_configs"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({**config, "scrape_configs": [static]}))
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    checked = _promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    (deployment,) = [
        d
        for d in yaml.safe_load_all((PROJECT_ROOT / "deploy/serving/kubernetes.yaml").read_text())
        if d and d["kind"] == "Deployment"
    ]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    meta = {
        "__address__": "10.0.0.7:8500",
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_namespace": "default",
        "__meta_kubernetes_pod_name": "taxi-serving-0",
    }
    for key, value in annotations.items():
        name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
        meta[f"__meta_kubernetes_pod_annotation_{name}"] = value
    target = _relabel(job["relabel_configs"], meta)
    assert target is not None
    assert target["__address__"] == "10.0.0.7:8501"
    assert target["__metrics_path__"] == "/monitoring/prometheus/metrics"
    assert (target["namespace"], target["pod"]) == ("default", "taxi-serving-0")
    unannotated = {k: v for k, v in meta.items() if "prometheus_io_scrape" not in k}
    assert _relabel(job["relabel_configs"], unannotated) is None


def _job(config: dict, name: str) -> dict:
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == name]
    return job


def _relabel(rules: list[dict], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus relabeling (keep and replace actions), regexes anchored as Prometheus does."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace" and match:
            replacement = re.sub(r"\$(\d+)", r"\\\1", rule.get("replacement", "$1"))
            labels[rule["target_label"]] = match.expand(replacement)
    return labels


# --- a real Prometheus scraping a real model server -----------------------------------------------


class _Stack:
    def __init__(self, server: ServerProcess, prometheus: subprocess.Popen, url: str, log: Path):
        self.server, self.prometheus, self.url, self.log = server, prometheus, url, log

    def query(self, expr: str) -> dict:
        response = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (expr, body)
        return body["data"]

    def wait_for(self, expr: str, predicate=lambda result: bool(result), timeout: float = 90.0):
        deadline = time.time() + timeout
        while True:
            result = self.query(expr)["result"]
            if predicate(result):
                return result
            if time.time() > deadline:
                raise AssertionError(f"{expr}: {result}\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)


def _predict(server: ServerProcess, path: str, n: int) -> requests.Response:
    instances = [{"b64": base64.b64encode(make_example(SAMPLE_ROW)).decode()}] * n
    return requests.post(
        f"{server.rest_url}/v1/models/{MODEL}{path}:predict",
        json={"instances": instances},
        timeout=30,
    )


def _predict_invalid(server: ServerProcess, path: str) -> requests.Response:
    """A request the server answers 400 (INVALID_ARGUMENT): an input the model does not have."""
    return requests.post(
        f"{server.rest_url}/v1/models/{MODEL}{path}:predict",
        json={"instances": [{"no_such_input": 1}]},
        timeout=30,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring")
    build_model(root / MODEL / "1", bias=-2.0)  # stable: low scores
    build_model(root / MODEL / "2", bias=2.0)  # canary: high scores
    (root / "models.config").write_text(f"""
model_config_list {{ config {{
  name: "{MODEL}" base_path: "{root / MODEL}" model_platform: "tensorflow"
  model_version_policy {{ all {{}} }}
  version_labels {{ key: "stable" value: 1 }}
  version_labels {{ key: "canary" value: 2 }}
}} }}
""")
    server = ServerProcess(f"--model_config_file={root / 'models.config'}").wait_ready()

    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    job = _job(config, JOB)  # the skew-monitor job has its own test (test_skew_monitor.py)
    config["scrape_configs"] = [job]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{server.rest_port}"]}]
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = _promtool("check", "config", str(root / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    port = free_port()
    log = root / "prometheus.log"
    with open(log, "wb") as out:
        prometheus = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            assert prometheus.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield _Stack(server, prometheus, url, log)
    finally:
        server.stop()
        prometheus.terminate()
        try:
            prometheus.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait()


def test_prometheus_scrapes_per_version_series_from_the_model_server(stack):
    server = stack.server
    for _ in range(3):
        assert _predict(server, "/labels/stable", 4).status_code == 200
    for _ in range(2):
        assert _predict(server, "/labels/canary", 5).status_code == 200
    assert _predict_invalid(server, "/versions/2").status_code == 400

    def total(result):
        return {
            (r["metric"]["version"], r["metric"]["status"]): float(r["value"][1]) for r in result
        }

    expr = (
        f'sum by (version, status) (tfserving_request_count_total{{job="{JOB}", method="predict"}})'
    )
    counts = total(stack.wait_for(expr, lambda r: len(r) == 3))
    assert counts == {("1", "OK"): 3, ("2", "OK"): 2, ("2", "INVALID_ARGUMENT"): 1}
    assert [r["value"][1] for r in stack.query(f'up{{job="{JOB}"}}')["result"]] == ["1"]

    scores = stack.query(f'tfserving_prediction_score_count{{job="{JOB}"}}')["result"]
    assert {r["metric"]["version"]: float(r["value"][1]) for r in scores} == {"1": 12, "2": 10}
    buckets = stack.query(f'tfserving_prediction_score_bucket{{job="{JOB}", version="2"}}')[
        "result"
    ]
    assert len(buckets) == len(SCORE_BUCKETS) + 1  # + the +Inf bucket
    latency = stack.query(
        f'tfserving_request_latency_seconds_count{{job="{JOB}", method="predict", version="1"}}'
    )
    assert float(latency["result"][0]["value"][1]) == 3

    labels = stack.query(f'tfserving_model_version_label{{job="{JOB}"}}')["result"]
    assert {(r["metric"]["label"], r["metric"]["version"]) for r in labels} == {
        ("stable", "1"),
        ("canary", "2"),
    }


def test_recording_rules_compare_canary_and_stable_by_label(stack):
    server = stack.server
    deadline = time.time() + 90
    result = []
    while time.time() < deadline:  # keep traffic flowing while rate() windows fill
        _predict(server, "/labels/stable", 3)
        _predict(server, "/labels/canary", 3)
        result = stack.query("tfserving:prediction_score:mean_5m:by_label")["result"]
        if len(result) == 2:
            break
        time.sleep(0.5)
    means = {r["metric"]["label"]: float(r["value"][1]) for r in result}
    assert set(means) == {"stable", "canary"}, stack.log.read_text()[-3000:]
    # Every request sends the same row, so each version's mean is the score it answers.
    answered = {
        label: _predict(server, f"/labels/{label}", 1).json()["predictions"][0][0]
        for label in means
    }
    assert means == pytest.approx(answered, rel=1e-5)
    assert means["canary"] > means["stable"] + 0.3  # biases +2 and -2
    failures = stack.wait_for(
        "tfserving:request_failures:ratio_rate5m:by_label", lambda r: len(r) == 2
    )
    assert {r["metric"]["label"] for r in failures} == {"stable", "canary"}
    rules = requests.get(stack.url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {
        rule["name"] for group in rules for rule in group["rules"] if rule["type"] == "alerting"
    }
    assert loaded == set(_alerts())
    assert all(rule["health"] == "ok" for group in rules for rule in group["rules"]), rules


# --- the Grafana dashboard ------------------------------------------------------------------------

REQUIRED_PANELS = {
    "Model servers up": ["up{"],
    "Versions and labels": ["tfserving_model_version_state", "tfserving_model_version_label"],
    "Request rate by version": ["tfserving_request_count_total"],
    "Error ratio by version": ['status!="OK"', "tfserving:request_errors:ratio_rate5m"],
    "Latency p50 / p99 by version": [
        "histogram_quantile(0.99",
        "tfserving_request_latency_seconds_bucket",
    ],
    "Predicted score distribution": ["tfserving_prediction_score_bucket"],
    "Mean predicted score by version": [
        "tfserving_prediction_score_sum",
        "tfserving_prediction_score_count",
    ],
    "Canary vs stable: failure ratio": ["tfserving:request_failures:ratio_rate5m:by_label"],
    "Canary vs stable: p99 latency": ["tfserving:request_latency_seconds:p99_5m:by_label"],
    "Canary vs stable: mean score": ["tfserving:prediction_score:mean_5m:by_label"],
    "Warmup time per version": ["tfserving_model_warmup_seconds"],
    "Live feature skew vs schema threshold": [SKEW_DISTANCE_METRIC, SKEW_THRESHOLD_METRIC],
}


def _dashboard_queries() -> dict[str, list[str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {
        p["title"]: [t["expr"] for t in p.get("targets", [])]
        for p in dashboard["panels"]
        if p["type"] != "row"
    }


def test_dashboard_holds_the_panels_and_queries_it_must():
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _dashboard_queries()
    for title, needles in REQUIRED_PANELS.items():
        assert title in queries, f"panel {title!r} missing"
        text = " ".join(queries[title])
        for needle in needles:
            assert needle in text, f"panel {title!r} lacks {needle}"
    # Per-version panels split by version; canary panels select the labels.
    for title in (
        "Request rate by version",
        "Error ratio by version",
        "Mean predicted score by version",
    ):
        # by (model_name, version), or a recording rule, which keeps the version label
        assert all("version" in q or q.startswith("tfserving:") for q in queries[title])
    for title in [t for t in queries if t.startswith("Canary vs stable")]:
        assert all('label=~"stable|canary"' in q for q in queries[title])
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "model"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    # Every recording rule a panel reads exists in alerts.yml.
    recorded = {
        r["record"]
        for g in yaml.safe_load(ALERTS.read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    for expr in (q for qs in queries.values() for q in qs):
        for name in re.findall(r"tfserving:[a-z0-9_:]+", expr):
            assert name in recorded, name


def _grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace('=~"$model"', f'=~"{MODEL}"')


# No data in this stack: the skew exporter's panel and warmup (the versions have no warmup file).
NO_DATA_HERE = {"Live feature skew vs schema threshold", "Warmup time per version"}


def test_every_dashboard_query_runs_on_prometheus(stack):
    """Every panel's query parses and runs; every panel this stack can feed gets data. Rates need
    two scrapes of a series and the canary panels read recording rules, so the test keeps traffic
    flowing to both labels (and one invalid request each time, for the error panels) until each
    panel has data: it does not lean on what earlier tests sent."""
    deadline = time.time() + 90
    for title, exprs in _dashboard_queries().items():
        for expr in exprs:
            while True:
                _predict(stack.server, "/labels/stable", 1)
                _predict(stack.server, "/labels/canary", 1)
                _predict_invalid(stack.server, "/labels/canary")
                data = stack.query(_grafana_to_promql(expr))  # asserts Prometheus parsed and ran it
                if data["result"] or title in NO_DATA_HERE:
                    break
                assert time.time() < deadline, f"{title}: no data for {expr}"
                time.sleep(0.5)
    bad = requests.get(stack.url + "/api/v1/query", params={"query": "sum(rate(x[1m]"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"


def test_server_down_alert_goes_pending_when_the_server_stops(stack):
    """Last in the module: it stops the model server."""
    stack.server.stop()
    stack.wait_for(f'up{{job="{JOB}"}} == 0')

    def down_alert(_):
        alerts = requests.get(stack.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "ModelServerDown"]

    deadline = time.time() + 60
    while not down_alert(None):
        assert time.time() < deadline, stack.log.read_text()[-3000:]
        time.sleep(0.5)
    (alert,) = down_alert(None)
    assert alert["state"] in ("pending", "firing") and alert["labels"]["severity"] == "page"
