"""Canary split and `mlops models compare`: unit checks of the split and the statistics, then
real `mlops serve` processes over small real SavedModels (serving/testing.py) labelled stable and
canary, driven over REST and gRPC, and the compare command reading their metrics.

Versions tell apart by their bias: the predicted score says which version answered, so the
`X-Model-Version` header and gRPC's model_spec are checked against what actually ran.
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
import requests
import tensorflow as tf
import yaml
from click.testing import CliRunner
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from mlops.cli import main
from registry import compare as cmp
from serving.canary import CANARY, STABLE, CanaryRouter, CanarySplit
from tests.paths import PROJECT_ROOT
from tests.serving_models import SAMPLE_ROW, ServerProcess, build_model, free_port, make_example

MODEL = "taxi"
ALERTS = PROJECT_ROOT / "deploy" / "monitoring" / "alerts.yml"
EXAMPLE = base64.b64encode(make_example(SAMPLE_ROW)).decode()


# --- the split, in process ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, default, per_model",
    [
        ("25", 25.0, {}),
        (" 0 ", 0.0, {}),
        ("100", 100.0, {}),
        ("12.5", 12.5, {}),
        ("taxi=10,other=0.5", 0.0, {"taxi": 10.0, "other": 0.5}),
    ],
)
def test_canary_percent_parses(text, default, per_model):
    split = CanarySplit.parse(text)
    assert (split.default, dict(split.per_model)) == (default, per_model)


@pytest.mark.parametrize(
    "text, message",
    [
        ("-5", "between 0 and 100"),
        ("101", "between 0 and 100"),
        ("1e9", "between 0 and 100"),
        ("nan", "between 0 and 100"),
        ("inf", "between 0 and 100"),
        ("abc", "is not a number"),
        ("", "is not a number"),
        ("10%", "is not a number"),
        ("taxi=", "is not a number"),
        ("=5", "is not MODEL=PERCENT"),
        ("taxi=5,taxi=6", "given twice"),
        ("taxi=5,,", "is not MODEL=PERCENT"),
        ("taxi=-1", "between 0 and 100"),
    ],
)
def test_hostile_canary_percent_is_one_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        CanarySplit.parse(text)


def test_router_splits_at_the_percentage_and_sticks_by_key():
    labels = {STABLE: 1, CANARY: 2}
    router = CanaryRouter(CanarySplit(25.0), random.Random(7))
    picks = Counter(router.pick(MODEL, labels) for _ in range(20_000))
    assert abs(picks[CANARY] / 20_000 - 0.25) < 0.015  # 5 standard deviations
    keyed = {k: router.pick(MODEL, labels, k) for k in map(str, range(2000))}
    assert all(router.pick(MODEL, labels, k) == v for k, v in keyed.items())  # sticky
    assert abs(Counter(keyed.values())[CANARY] / 2000 - 0.25) < 0.05  # and still 25%
    assert CanaryRouter(CanarySplit(0.0)).pick(MODEL, labels) is None  # off: TF Serving's rule
    assert {CanaryRouter(CanarySplit(100.0)).pick(MODEL, labels) for _ in range(200)} == {CANARY}
    per_model = CanaryRouter(CanarySplit(0.0, {"other": 50.0}))
    assert per_model.pick(MODEL, labels) is None
    assert per_model.pick("other", labels) in (STABLE, CANARY)
    # A label missing: the documented fallback (None = the newest version, as TF Serving).
    assert router.pick(MODEL, {STABLE: 1}) is None and router.pick(MODEL, {CANARY: 2}) is None


# --- the statistics, in process -------------------------------------------------------------------


def test_histogram_quantile_matches_prometheus_interpolation():
    buckets = {0.01: 50.0, 0.1: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert cmp.histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert cmp.histogram_quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 0.9)
    assert cmp.histogram_quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 0.5)
    assert cmp.histogram_quantile(0.99, {0.1: 0.0, math.inf: 10.0}) == 0.1  # +Inf bucket
    assert cmp.histogram_quantile(0.99, {math.inf: 0.0}) is None


def test_histogram_ks_is_zero_for_the_same_shape_and_one_for_disjoint():
    a = {0.5: 30.0, 1.0: 100.0, math.inf: 100.0}
    assert cmp.histogram_ks(a, {k: 3 * v for k, v in a.items()}) == 0.0
    assert cmp.histogram_ks(a, {0.5: 0.0, 1.0: 10.0, math.inf: 10.0}) == pytest.approx(0.3)
    assert cmp.histogram_ks({0.5: 5.0, 1.0: 5.0, math.inf: 5.0}, {0.5: 0.0, 1.0: 5.0}) == 0.0


def _samples(version: str, latencies, scores, failures: int = 0) -> list[cmp.Sample]:
    """The server's exposition for one version, from raw latencies (s) and scores."""
    import numpy as np

    from serving.metrics import SCORE_BUCKETS

    latency_edges = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
    labels = {"model_name": MODEL, "version": version, "method": "predict"}
    out = [
        cmp.Sample(cmp.REQUESTS, {**labels, "status": "OK"}, len(latencies) - failures),
        cmp.Sample(cmp.REQUESTS, {**labels, "status": "INTERNAL"}, failures),
        cmp.Sample(cmp.SCORE_SUM, labels, float(np.sum(scores))),
        cmp.Sample(cmp.SCORE_COUNT, labels, len(scores)),
    ]
    for edges, values, name in (
        (latency_edges, latencies, cmp.LATENCY_BUCKET),
        (SCORE_BUCKETS, scores, cmp.SCORE_BUCKET),
    ):
        for le in (*edges, math.inf):
            count = float(np.sum(np.asarray(values) <= le))
            out.append(cmp.Sample(name, {**labels, "le": str(le)}, count))
    return out


def _judge(stable, canary) -> dict[str, bool | None]:
    result = cmp.compare(stable + canary, MODEL, "1", "2")
    return {s.name: s.worse for s in result.signals}


def test_compare_gates_raise_no_false_alarms_on_same_distribution_samples():
    """50 canaries drawn like stable (25% / 75% of the traffic): no signal fires."""
    import numpy as np

    rng = np.random.default_rng(11)
    alarms = Counter()
    for _ in range(50):

        def draw(n):
            latency = rng.lognormal(np.log(0.004), 0.6, n)  # ~4 ms, a long right tail
            return latency, rng.beta(2, 5, n)

        s_lat, s_score = draw(750)
        c_lat, c_score = draw(250)
        verdict = _judge(_samples("1", s_lat, s_score), _samples("2", c_lat, c_score))
        alarms.update(name for name, worse in verdict.items() if worse)
    assert not alarms, alarms


def test_compare_gates_detect_a_slow_failing_or_shifted_canary():
    import numpy as np

    rng = np.random.default_rng(12)
    s_lat, s_score = rng.lognormal(np.log(0.004), 0.6, 750), rng.beta(2, 5, 750)
    stable = _samples("1", s_lat, s_score)
    c_lat, c_score = rng.lognormal(np.log(0.004), 0.6, 250), rng.beta(2, 5, 250)
    slow = _judge(stable, _samples("2", c_lat + 0.05, c_score))  # +50 ms per request
    assert slow == {
        "failure ratio": False,
        "p99 latency": True,
        "mean score": False,
        "score distribution (KS)": False,
    }
    # 20 slow requests in 250 (8%, beyond p99) is significant; 3 in 250 is not.
    for n_slow, expected in ((20, True), (3, False)):
        lat = c_lat.copy()
        lat[:n_slow] = 0.4
        assert _judge(stable, _samples("2", lat, c_score))["p99 latency"] is expected
    failing = _judge(stable, _samples("2", c_lat, c_score, failures=5))  # 2% vs 0%
    assert failing["failure ratio"] is True
    assert _judge(stable, _samples("2", c_lat, c_score, failures=2))["failure ratio"] is False
    shifted = _judge(stable, _samples("2", c_lat, np.clip(c_score + 0.15, 0, 1)))
    assert shifted["mean score"] is True and shifted["score distribution (KS)"] is True
    # Same mean, different shape (bimodal): only the distribution test sees it.
    mean = float(np.mean(s_score))
    bimodal = np.where(rng.random(250) < 0.5, mean - 0.2, mean + 0.2)
    reshaped = _judge(stable, _samples("2", c_lat, bimodal))
    assert reshaped["mean score"] is False and reshaped["score distribution (KS)"] is True


def _alert_thresholds() -> dict[str, float]:
    rules = [
        r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if "alert" in r
    ]
    by_signal = {
        r["labels"]["signal"]: " ".join(r["expr"].split())
        for r in rules
        if r["alert"] == "CanaryWorseThanStable"
    }
    return {
        "max_failure_ratio_increase": float(re.search(r"> ([\d.]+)$", by_signal["errors"])[1]),
        "max_p99_ratio": float(re.search(r"> ([\d.]+) \*", by_signal["p99_latency"])[1]),
        "max_mean_score_shift": float(re.search(r"> ([\d.]+)$", by_signal["prediction_shift"])[1]),
    }


def test_compare_defaults_are_the_alert_rules_thresholds():
    """One source of truth: the CLI's defaults are the CanaryWorseThanStable rules' numbers."""
    from_alerts = _alert_thresholds()
    defaults = cmp.Thresholds()
    assert from_alerts == {k: getattr(defaults, k) for k in from_alerts}
    help_text = CliRunner().invoke(main, ["models", "compare", "--help"]).output
    for name, value in from_alerts.items():
        assert re.search(rf"--{name.replace('_', '-')}.*?default:\s*{value:g}\]", help_text, re.S)


# --- models --------------------------------------------------------------------------------------


class _Rejecting(tf.Module):
    """A version whose serving_default takes a float tensor: every tf.Example request fails."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"probabilities": tf.expand_dims(x, 1)}


def _rejecting_model(path: Path) -> None:
    module = _Rejecting()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def _config(path: Path, base: Path, labels: dict[str, int]) -> None:
    text = "".join(f'  version_labels {{ key: "{k}" value: {v} }}\n' for k, v in labels.items())
    path.write_text(
        f'model_config_list {{ config {{\n  name: "{MODEL}" base_path: "{base}"\n'
        f'  model_platform: "tensorflow" model_version_policy {{ all {{}} }}\n{text}}} }}\n'
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("canary") / MODEL
    build_model(base / "1", bias=-2.0)  # stable
    build_model(base / "2", bias=2.0)  # canary: scores far from stable's
    build_model(base / "3", bias=0.0)  # newest, unlabelled: where TF Serving sends requests
    return base


def _predict(session, server, path="", n=1, headers=None) -> requests.Response:
    return session.post(
        f"{server.rest_url}/v1/models/{MODEL}{path}:predict",
        json={"instances": [{"b64": EXAMPLE}] * n},
        headers=headers or {},
        timeout=30,
    )


def _score_of(server, version: int) -> float:
    r = _predict(requests, server, f"/versions/{version}")
    assert r.status_code == 200 and r.headers["X-Model-Version"] == str(version)
    return r.json()["predictions"][0][0]


def _grpc_predict(stub, version: int | None = None, label: str | None = None, key=None):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    req.inputs["examples"].CopyFrom(tf.make_tensor_proto([make_example(SAMPLE_ROW)]))
    metadata = (("x-canary-key", key),) if key else None
    response, call = stub.Predict.with_call(req, timeout=30, metadata=metadata)
    trailing = dict(call.trailing_metadata() or ())
    return response, trailing


def _metrics(server) -> list[cmp.Sample]:
    return cmp.server_samples(server.rest_url, "/monitoring/prometheus/metrics")


@pytest.fixture(scope="module")
def split_server(base, tmp_path_factory):
    config = tmp_path_factory.mktemp("split") / "models.config"
    _config(config, base, {STABLE: 1, CANARY: 2})
    server = ServerProcess(
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=0.2",
        "--canary_percent=25",
    ).wait_ready()
    server.config = config
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_unlabelled_rest_requests_split_25_percent_and_say_who_answered(split_server):
    server = split_server
    scores = {v: _score_of(server, v) for v in (1, 2, 3)}
    assert len({round(s, 4) for s in scores.values()}) == 3
    before = cmp.figures_by_version(_metrics(server), MODEL)
    n = 1000  # binomial sd of the share: 1.4 points, so +-5 points is 3.6 sd
    answered = Counter()
    with requests.Session() as session:
        for _ in range(n):
            r = _predict(session, server)
            assert r.status_code == 200, r.text
            version = int(r.headers["X-Model-Version"])
            label = r.headers["X-Model-Version-Label"]
            assert (version, label) in ((1, STABLE), (2, CANARY))
            # the header names the version that ran: its score is that version's
            assert r.json()["predictions"][0][0] == pytest.approx(scores[version], abs=1e-6)
            answered[version] += 1
    share = answered[2] / n * 100
    assert 20 <= share <= 30, answered
    assert answered[3] == 0  # the newest, unlabelled version gets no unlabelled traffic now

    # Per-version metrics carry the answering version: requests, latency and scores.
    after = cmp.figures_by_version(_metrics(server), MODEL)
    for version in (1, 2):
        v = str(version)
        gained = after[v].requests - (before[v].requests if v in before else 0)
        assert gained == answered[version]
        scored = after[v].score_count - (before[v].score_count if v in before else 0)
        assert scored == answered[version]
        assert after[v].latency[math.inf] >= answered[version]
        assert after[v].failures == 0


@pytest.mark.slow
def test_requests_naming_a_version_or_label_are_never_split(split_server):
    server = split_server
    with requests.Session() as session:
        for path, version, label in [
            ("/versions/3", 3, None),
            ("/versions/1", 1, None),
            ("/labels/canary", 2, CANARY),
            ("/labels/stable", 1, STABLE),
        ]:
            for _ in range(40):
                r = _predict(session, server, path)
                assert r.status_code == 200
                assert r.headers["X-Model-Version"] == str(version)
                assert r.headers.get("X-Model-Version-Label") == label
        # Classify and regress are split alike and say who answered.
        r = session.post(
            f"{server.rest_url}/v1/models/{MODEL}:regress",
            json={"signature_name": "regression", "examples": [SAMPLE_ROW]},
            timeout=30,
        )
        assert r.status_code == 200 and r.headers["X-Model-Version"] in ("1", "2")
        # An error after routing still names the version that refused it.
        r = session.post(
            f"{server.rest_url}/v1/models/{MODEL}:predict",
            json={"instances": [{"nope": 1}]},
            timeout=30,
        )
        assert r.status_code == 400 and r.headers["X-Model-Version"] in ("1", "2")
        # Status and metadata are not inference: TF Serving's answers, no version header.
        r = session.get(f"{server.rest_url}/v1/models/{MODEL}/metadata", timeout=30)
        assert r.json()["model_spec"]["version"] == "3" and "X-Model-Version" not in r.headers


@pytest.mark.slow
def test_sticky_key_always_lands_on_the_same_version(split_server):
    with requests.Session() as session:
        seen = {}
        for key in map(str, range(40)):
            versions = {
                _predict(session, split_server, headers={"X-Canary-Key": key}).headers[
                    "X-Model-Version"
                ]
                for _ in range(4)
            }
            assert len(versions) == 1, (key, versions)
            seen[key] = versions.pop()
    assert set(seen.values()) == {"1", "2"}  # 40 keys at 25%: both sides (P(miss) ~ 1e-5)


@pytest.mark.slow
def test_grpc_unlabelled_requests_are_split_and_model_spec_names_the_answering_version(
    split_server,
):
    server = split_server
    scores = {v: _score_of(server, v) for v in (1, 2)}
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        answered = Counter()
        n = 200  # sd 3.1 points: +-13 is over 4 sd
        for _ in range(n):
            response, trailing = _grpc_predict(stub)
            version = response.model_spec.version.value
            assert version in (1, 2)
            p = tf.make_ndarray(response.outputs["probabilities"])[0][0]
            assert p == pytest.approx(scores[version], abs=1e-6)
            assert trailing["x-model-version"] == str(version)
            assert trailing["x-model-version-label"] == (CANARY if version == 2 else STABLE)
            answered[version] += 1
        assert 12 <= answered[2] / n * 100 <= 38, answered
        for _ in range(20):
            assert _grpc_predict(stub, version=3)[0].model_spec.version.value == 3
            assert _grpc_predict(stub, label=STABLE)[0].model_spec.version.value == 1
        keyed = {_grpc_predict(stub, key="user-7")[0].model_spec.version.value for _ in range(10)}
        assert len(keyed) == 1


@pytest.fixture
def prometheus(split_server, tmp_path):
    """A real Prometheus scraping the split server every second (Debian's package)."""
    config = yaml.safe_load((PROJECT_ROOT / "deploy/monitoring/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = []
    # The model server's job (prometheus.yml also scrapes `mlops monitor`).
    job = next(j for j in config["scrape_configs"] if "monitor" not in j["job_name"])
    job["static_configs"] = [{"targets": [f"127.0.0.1:{split_server.rest_port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None and time.time() < deadline, tmp_path / "prometheus.log"
            try:
                if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.mark.slow
def test_compare_reads_the_same_figures_from_prometheus(split_server, prometheus):
    server = split_server

    methods = "|".join(cmp.INFERENCE_METHODS)  # what figures_by_version counts

    def scraped_requests() -> float:
        r = requests.get(
            prometheus + "/api/v1/query",
            params={"query": f'sum({cmp.REQUESTS}{{method=~"{methods}"}})'},
            timeout=10,
        ).json()["data"]["result"]
        return float(r[0]["value"][1]) if r else -1.0

    def wait_until_scraped() -> None:
        total = sum(f.requests for f in cmp.figures_by_version(_metrics(server), MODEL).values())
        deadline = time.time() + 60
        while scraped_requests() != total:
            assert time.time() < deadline, (scraped_requests(), total)
            time.sleep(0.3)

    # One request first, so the series exist (a fresh server exports none) before the baseline.
    with requests.Session() as session:
        _predict(session, server, "/labels/stable", 2)
    wait_until_scraped()  # the totals before this test's traffic: increase() counts from here
    with requests.Session() as session:
        for _ in range(3):  # traffic across several scrapes
            for _ in range(40):
                _predict(session, server, "/labels/stable", 2)
                _predict(session, server, "/labels/canary", 2)
            time.sleep(1.2)
    wait_until_scraped()
    direct = _compare(server, "--json")
    via = _compare(server, f"--prometheus={prometheus}", "--json")
    assert direct.returncode == via.returncode == 1, direct.stderr + via.stderr
    direct_json, via_json = json.loads(direct.stdout), json.loads(via.stdout)
    assert via_json["requests"] == direct_json["requests"]
    assert via_json["worse"] == direct_json["worse"] == ["mean score", "score distribution (KS)"]
    windowed = _compare(server, f"--prometheus={prometheus}", "--window=5m", "--min-requests=50")
    assert windowed.returncode == 1, windowed.stdout + windowed.stderr
    assert "mean score" in windowed.stdout.split("verdict:")[1]
    bad = _compare(server, f"--prometheus={prometheus}", "--window=five")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1, bad.stderr


@pytest.mark.slow
def test_compare_flags_the_shifted_canary_and_a_missing_label_falls_back(split_server, base):
    """The canary here predicts far from stable (bias +2 vs -2): compare says worse (scores);
    then the canary label is removed and the split falls back to TF Serving's newest version."""
    server = split_server
    with requests.Session() as session:
        for _ in range(100):
            _predict(session, server, "/labels/stable", 2)
            _predict(session, server, "/labels/canary", 2)
    out = _compare(server)
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"mean score .* WORSE", out.stdout) and "failure ratio" in out.stdout
    assert "verdict: canary (version 2) is WORSE than stable (version 1): mean score" in out.stdout

    _config(server.config, base, {STABLE: 1})
    deadline = time.time() + 30
    while 'label="canary"' in requests.get(server.rest_url + "/monitoring/prometheus/metrics").text:
        assert time.time() < deadline, server.log()
        time.sleep(0.2)
    with requests.Session() as session:
        versions = {_predict(session, server).headers["X-Model-Version"] for _ in range(30)}
    assert versions == {"3"}
    assert "Canary split of taxi is off" in server.log()
    out = _compare(server)
    assert out.returncode == 2 and "label 'canary' names no version" in out.stderr


@pytest.mark.slow
def test_without_the_flag_unlabelled_requests_go_to_the_newest_version(base, tmp_path):
    config = tmp_path / "models.config"
    _config(config, base, {STABLE: 1, CANARY: 2})
    server = ServerProcess(f"--model_config_file={config}").wait_ready()
    try:
        with requests.Session() as session:
            for _ in range(100):
                r = _predict(session, server)
                assert r.headers["X-Model-Version"] == "3"
                assert "X-Model-Version-Label" not in r.headers
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert {_grpc_predict(stub)[0].model_spec.version.value for _ in range(20)} == {3}
    finally:
        server.stop()


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--canary_percent=-5", "between 0 and 100"),
        ("--canary_percent=101", "between 0 and 100"),
        ("--canary_percent=ten", "is not a number"),
        ("--canary_percent=nosuch=5", "nosuch, which the model config does not serve"),
    ],
)
def test_serve_refuses_hostile_canary_flags_in_one_line(flag, message, tmp_path):
    config = tmp_path / "models.config"
    _config(config, tmp_path / MODEL, {STABLE: 1, CANARY: 2})
    result = CliRunner().invoke(main, ["serve", f"--model_config_file={config}", flag])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.output


# --- mlops models compare on a real server --------------------------------------------------------


class _Ran:
    def __init__(self, result) -> None:
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout, result.stderr


def _compare(server, *args: str) -> _Ran:
    """`mlops models --server=... compare ...`, in process (click's runner: exit code, stdout and
    stderr apart); the documented commands test runs it as a subprocess."""
    return _Ran(
        CliRunner().invoke(
            main,
            [
                "models",
                f"--server={server.rest_url if server else f'127.0.0.1:{free_port()}'}",
                "--config=/nonexistent/models.config",
                "compare",
                *args,
            ],
        )
    )


@pytest.mark.slow
def test_compare_equal_models_then_an_erroring_canary(tmp_path):
    base = tmp_path / MODEL
    build_model(base / "1", bias=-1.0)
    build_model(base / "2", bias=-1.0)  # the same model again: not worse
    _rejecting_model(base / "4")  # rejects every tf.Example request
    config = tmp_path / "models.config"
    _config(config, base, {STABLE: 1, CANARY: 2})
    server = ServerProcess(
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=0.2",
        "--canary_percent=25",
    ).wait_ready()
    try:
        too_early = _compare(server)
        assert too_early.returncode == 2 and "not enough traffic" in too_early.stderr
        rows = [dict(SAMPLE_ROW, trip_miles=0.5 * i, fare=3.0 + i) for i in range(8)]
        instances = [{"b64": base64.b64encode(make_example(r)).decode()} for r in rows]
        with requests.Session() as session:
            for _ in range(800):
                r = session.post(
                    f"{server.rest_url}/v1/models/{MODEL}:predict",
                    json={"instances": instances},
                    timeout=30,
                )
                assert r.status_code == 200
        out = _compare(server)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "verdict: canary (version 2) is not worse than stable (version 1)" in out.stdout
        for signal in ("failure ratio", "p99 latency", "mean score", "score distribution"):
            assert re.search(rf"^{signal}.* ok ", out.stdout, re.M), out.stdout

        # The canary label moves to the rejecting version; the split now sends it 25%.
        _config(config, base, {STABLE: 1, CANARY: 4})
        deadline = time.time() + 30
        while 'label="canary",model_name="taxi",version="4"' not in requests.get(
            server.rest_url + "/monitoring/prometheus/metrics"
        ).text.replace(" ", ""):
            assert time.time() < deadline, server.log()
            time.sleep(0.2)
        failed = Counter()
        with requests.Session() as session:
            for _ in range(600):
                r = session.post(
                    f"{server.rest_url}/v1/models/{MODEL}:predict",
                    json={"instances": instances},
                    timeout=30,
                )
                failed[(r.headers["X-Model-Version"], r.status_code)] += 1
        assert set(failed) == {("1", 200), ("4", 400)}, failed
        out = _compare(server, STABLE, CANARY)
        assert out.returncode == 1, out.stdout + out.stderr
        assert re.search(r"^failure ratio\s+0\.00%\s+100\.00%\s+WORSE", out.stdout, re.M)
        assert "is WORSE than stable (version 1): failure ratio 100.00% vs 0.00%" in out.stdout
        as_json = _compare(server, "--json")
        assert as_json.returncode == 1 and '"failure ratio"' in as_json.stdout
        # Versions work as well as labels; a looser threshold lets the same figures pass.
        assert _compare(server, "1", "4", "--max-failure-ratio-increase=2").returncode == 0
        assert _compare(server, "1", "1").returncode == 2
    finally:
        server.stop()


def test_compare_without_a_server_is_one_line_exit_2():
    def compare(*args: str):
        server = f"--server=127.0.0.1:{free_port()}"
        return CliRunner().invoke(main, ["models", server, "compare", *args])

    out = compare()
    assert out.exit_code == 2, out.output
    (line,) = out.stderr.splitlines()
    assert line.startswith("Error: could not compare: no metrics at http://127.0.0.1:")
    out = compare("--prometheus=http://127.0.0.1:1")
    assert out.exit_code == 2 and len(out.stderr.splitlines()) == 1
    for bad in ("--max-p99-ratio=-1", "--alpha=0", "--min-requests=-3", "--max-score-ks=nan"):
        out = compare(bad)
        assert out.exit_code == 2 and len(out.stderr.splitlines()) == 1, (bad, out.output)
        assert "must be" in out.stderr
    out = compare("--window=5m")
    assert out.exit_code == 2 and "--window needs --prometheus" in out.stderr


# --- docs/models.md, "Canary rollout" -------------------------------------------------------------

DOC = PROJECT_ROOT / "docs" / "models.md"
_BLOCK = re.compile(r"^<!-- test: (canary|canary-server) -->\n```bash\n(.*?)\n```$", re.M | re.S)


def _doc_ports(text: str, ports: dict[int, int]) -> str:
    for default, port in ports.items():
        text = re.sub(rf"\b{default}\b", str(port), text)
    return text


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_documented_canary_commands_work_as_written(tmp_path):
    import os

    from registry.store import RegistryStore

    blocks = [(m.group(1), m.group(2)) for m in _BLOCK.finditer(DOC.read_text())]
    assert [k for k, _ in blocks] == ["canary", "canary-server", "canary"]
    root = tmp_path / "checkout"
    for version in (1732550400, 1732636800):  # the same model twice: compare says not worse
        build_model(root / "serving_model" / MODEL / str(version), bias=-1.0)
    (root / "data").symlink_to(PROJECT_ROOT / "data")
    ports = {8500: free_port(), 8501: free_port(), 9090: free_port()}
    metadata = str(tmp_path / "metadata.db")
    RegistryStore(metadata, create=True)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(PROJECT_ROOT),
        "MLOPS_MODEL_BASE_PATH": str(root / "serving_model" / MODEL),
        "MLOPS_METADATA": metadata,
        "MLOPS_SERVER": f"127.0.0.1:{ports[8501]}",
        "MLOPS_ACTOR": "docs@test",
    }

    def bash(script: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + _doc_ports(script, ports)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    promoted = bash(blocks[0][1])
    assert promoted.returncode == 0, promoted.stderr
    server_cmd = _doc_ports(blocks[1][1].replace("\\\n", " "), ports)
    server_cmd += f" --port={ports[8500]} --rest_api_port={ports[8501]}"
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        ["bash", "-c", "exec " + server_cmd], cwd=root, env=env, stdout=log, stderr=log
    )
    config = yaml.safe_load((PROJECT_ROOT / "deploy/monitoring/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s")
    config["rule_files"] = []
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{ports[8501]}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{ports[9090]}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{ports[8501]}/v1/models/taxi").ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "documented server did not come up"
            time.sleep(0.3)
        out = bash(blocks[2][1])
        assert out.returncode == 0, f"{out.stderr[-3000:]}\n{out.stdout[-3000:]}"
        assert re.search(r"^x-model-version: 173(2550400|2636800)$", out.stdout, re.M | re.I)
        verdicts = re.findall(r"^verdict: .*$", out.stdout, re.M)
        assert (
            verdicts
            == [
                "verdict: canary (version 1732636800) is not worse than stable (version 1732550400)"
            ]
            * 2
        ), out.stdout
        assert "Canary split of taxi: 25% of requests" in (tmp_path / "server.log").read_text()
    finally:
        for proc in (server, prometheus):
            proc.terminate()
            proc.wait(30)
        log.close()
