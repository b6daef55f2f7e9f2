"""deploy/serving/canary.yaml, checked offline: the core objects against the Kubernetes
OpenAPI schemas (kubernetes-validate); the Gateway API routes against the
gateway.networking.k8s.io/v1 fields they may use (no CRD schema ships offline, so a strict field
list stands in and a typo fails); and everything cross-checked: routes -> Services -> Deployments
-> ConfigMaps, ports, labels, weights, track headers, the model configs of both tracks, and the
Prometheus scrape annotations, against deploy/serving/kubernetes.yaml (the one-track deployment)
wherever the two must agree."""

from __future__ import annotations

import copy
import re
from pathlib import PurePosixPath

import kubernetes_validate
import pytest
import yaml

from pipeline.config import PipelineConfig
from serving.canary import CANARY, STABLE
from serving.config import ServerOptions, load_monitoring_path, parse_model_config
from serving.rest import _MODEL_RE
from tests.paths import PROJECT_ROOT

SERVING = PROJECT_ROOT / "deploy" / "serving"
CANARY_YAML = SERVING / "canary.yaml"
K8S = SERVING / "kubernetes.yaml"
MODEL_NAME = PipelineConfig().model_name
GRPC_PORT, REST_PORT = ServerOptions.port, ServerOptions.rest_api_port
K8S_VERSIONS = [kubernetes_validate.latest_version(), "1.29.0"]
TRACKS = (STABLE, CANARY)
GATEWAY_API = "gateway.networking.k8s.io/v1"


def _docs(path=CANARY_YAML) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kind(kind: str, path=CANARY_YAML) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in _docs(path) if d["kind"] == kind}


def _by_track(kind: str) -> dict[str, dict]:
    found = {d["metadata"]["labels"]["track"]: d for d in _kind(kind).values()}
    assert set(found) == set(TRACKS), f"one {kind} per track"
    return found


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


# --- the Gateway API objects: the fields these routes may use (Gateway API v1) --------------------
_ANY = object()
_BACKEND = {"name": str, "port": int, "weight": int, "filters": [_ANY]}
_HEADER_FILTER = {
    "type": str,
    "responseHeaderModifier": {"set": [{"name": str, "value": str}], "remove": [str]},
}
SCHEMAS = {
    "Gateway": {
        "gatewayClassName": str,
        "listeners": [{"name": str, "protocol": str, "port": int, "hostname": str}],
    },
    "HTTPRoute": {
        "parentRefs": [{"name": str, "sectionName": str}],
        "hostnames": [str],
        "rules": [
            {
                "matches": [{"path": {"type": str, "value": str}, "method": str}],
                "backendRefs": [{**_BACKEND, "filters": [_HEADER_FILTER]}],
            }
        ],
    },
    "GRPCRoute": {
        "parentRefs": [{"name": str, "sectionName": str}],
        "rules": [
            {
                "matches": [{"headers": [{"name": str, "value": str}], "method": _ANY}],
                "backendRefs": [{"name": str, "port": int, "weight": int}],
            }
        ],
    },
}
PATH_MATCH_TYPES = {"Exact", "PathPrefix"}


def check_schema(value, schema, where: str) -> None:
    if schema is _ANY:
        return
    if isinstance(schema, dict):
        assert isinstance(value, dict), f"{where}: expected an object"
        for key, item in value.items():
            assert key in schema, f"{where}: unknown field {key!r}"
            check_schema(item, schema[key], f"{where}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list) and value, f"{where}: expected a non-empty list"
        for i, item in enumerate(value):
            check_schema(item, schema[0], f"{where}[{i}]")
    else:
        assert isinstance(value, schema) and not isinstance(value, bool), f"{where}: {value!r}"


def _check_gateway_object(doc: dict) -> None:
    assert doc["apiVersion"] == GATEWAY_API
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    check_schema(doc["spec"], SCHEMAS[doc["kind"]], doc["kind"])


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_are_valid_kubernetes(version):
    docs = [d for d in _docs() if d["apiVersion"] != GATEWAY_API]
    assert {d["kind"] for d in docs} == {"ConfigMap", "Deployment", "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_gateway_api_objects_use_only_known_fields():
    kinds = [d["kind"] for d in _docs() if d["apiVersion"] == GATEWAY_API]
    assert sorted(kinds) == ["GRPCRoute", "Gateway", "HTTPRoute"]
    for doc in _docs():
        if doc["apiVersion"] == GATEWAY_API:
            _check_gateway_object(doc)
    (route,) = _kind("HTTPRoute").values()
    for rule in route["spec"]["rules"]:
        assert all(m["path"]["type"] in PATH_MATCH_TYPES for m in rule["matches"])
        for backend in rule["backendRefs"]:
            assert all(f["type"] == "ResponseHeaderModifier" for f in backend["filters"])


def test_the_field_check_rejects_typos():
    (route,) = _kind("HTTPRoute").values()
    typo = copy.deepcopy(route)
    typo["spec"]["rules"][0]["backendRef"] = typo["spec"]["rules"][0].pop("backendRefs")
    with pytest.raises(AssertionError, match="backendRef"):
        _check_gateway_object(typo)
    bad_weight = copy.deepcopy(route)
    bad_weight["spec"]["rules"][-1]["backendRefs"][0]["weight"] = "90"
    with pytest.raises(AssertionError, match="weight"):
        _check_gateway_object(bad_weight)


# --- cross-checks -------------------------------------------------------------------------------


def test_routes_point_at_the_track_services_ports_and_gateway_listeners():
    services = _kind("Service")
    (gateway,) = _kind("Gateway").values()
    listeners = {ls["name"]: ls for ls in gateway["spec"]["listeners"]}
    assert {n: ls["port"] for n, ls in listeners.items()} == {"http": REST_PORT, "grpc": GRPC_PORT}
    for kind, port, listener in (
        ("HTTPRoute", REST_PORT, "http"),
        ("GRPCRoute", GRPC_PORT, "grpc"),
    ):
        (route,) = _kind(kind).values()
        assert route["spec"]["parentRefs"] == [
            {"name": gateway["metadata"]["name"], "sectionName": listener}
        ]
        for rule in route["spec"]["rules"]:
            for backend in rule["backendRefs"]:
                service = services[backend["name"]]
                assert backend["port"] == port
                assert port in {p["port"] for p in service["spec"]["ports"]}
    for service in services.values():
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"  # gRPC to the backend: HTTP/2


def _weighted_rule(kind: str) -> dict[str, int]:
    (route,) = _kind(kind).values()
    services = _kind("Service")
    (rule,) = [r for r in route["spec"]["rules"] if len(r["backendRefs"]) == 2]
    return {
        services[b["name"]]["metadata"]["labels"]["track"]: b["weight"] for b in rule["backendRefs"]
    }


def test_unlabelled_traffic_is_split_by_the_same_weights_over_rest_and_grpc():
    rest, grpc_ = _weighted_rule("HTTPRoute"), _weighted_rule("GRPCRoute")
    assert rest == grpc_ and set(rest) == set(TRACKS)
    share = 100 * rest[CANARY] / sum(rest.values())
    assert 0 < share < 50
    header = CANARY_YAML.read_text().split("apiVersion")[0]
    assert f"{rest[STABLE]}% stable / {share:g}% canary" in header
    assert f"--canary_percent={share:g}" in header
    # The weighted rule is the catch-all and comes last (Gateway API: the most specific match
    # wins, so the label rules take precedence regardless; last keeps the file readable).
    (route,) = _kind("HTTPRoute").values()
    assert route["spec"]["rules"][-1]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]


def test_label_paths_go_to_their_track_and_every_backend_names_its_track():
    services = _kind("Service")
    (route,) = _kind("HTTPRoute").values()
    for rule in route["spec"]["rules"]:
        tracks = set()
        for backend in rule["backendRefs"]:
            track = services[backend["name"]]["metadata"]["labels"]["track"]
            tracks.add(track)
            (header_filter,) = backend["filters"]
            sets = header_filter["responseHeaderModifier"]["set"]
            assert sets == [{"name": "X-Model-Track", "value": track}]
        if len(tracks) == 1:
            (track,) = tracks
            paths = [m["path"]["value"] for m in rule["matches"]]
            verbs = set()
            for path in paths:
                m = _MODEL_RE.match(path)  # what the model server (and TF Serving) routes
                assert m and m.group("name") == MODEL_NAME and m.group("label") == track, path
                verbs.add(m.group("verb") or ("metadata" if m.group("metadata") else "status"))
            assert verbs == {"status", "metadata", "predict", "classify", "regress"}
    (grpc_route,) = _kind("GRPCRoute").values()
    for rule in grpc_route["spec"]["rules"]:
        if "matches" in rule:
            ((header,),) = [m["headers"] for m in rule["matches"]]
            (backend,) = rule["backendRefs"]
            assert header["name"] == "x-model-track"
            assert services[backend["name"]]["metadata"]["labels"]["track"] == header["value"]


def test_services_select_their_tracks_pods_and_not_the_one_track_deployment():
    deployments, services = _by_track("Deployment"), _by_track("Service")
    (single,) = _kind("Deployment", K8S).values()
    single_labels = single["spec"]["template"]["metadata"]["labels"]
    for track in TRACKS:
        pod_labels = deployments[track]["spec"]["template"]["metadata"]["labels"]
        selector = deployments[track]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items() and pod_labels["track"] == track
        assert services[track]["spec"]["selector"] == selector
        other = deployments[CANARY if track == STABLE else STABLE]
        assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()
        assert not selector.items() <= single_labels.items()
        assert not single["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        container = _container(deployments[track])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for port in services[track]["spec"]["ports"]:
            assert ports[port["targetPort"]] == port["port"]


def test_each_track_runs_the_one_track_server_unchanged_but_for_its_config():
    (single,) = _kind("Deployment", K8S).values()
    reference = _container(single)
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in single["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    for track, deployment in _by_track("Deployment").items():
        assert _container(deployment) == reference  # image, flags, probes, resources, mounts
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["models"]["persistentVolumeClaim"]["claimName"] in claims
        assert volumes["config"]["configMap"]["name"] == f"taxi-serving-{track}-config"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == single["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == REST_PORT
        assert annotations["prometheus.io/scrape"] == "true"


def test_each_tracks_model_config_serves_exactly_its_labelled_version(tmp_path):
    (single_config,) = _kind("ConfigMap", K8S).values()
    # The single server serves every dataset's model; the tracks are taxi's rollout.
    served = parse_model_config(single_config["data"]["models.config"]).model_config_list.config
    (reference,) = [entry for entry in served if entry.name == MODEL_NAME]
    versions = {}
    for track, config_map in _by_track("ConfigMap").items():
        data = config_map["data"]
        assert set(data) == set(single_config["data"])
        for name in ("batching.config", "monitoring.config"):
            assert data[name] == single_config["data"][name]
        (model,) = parse_model_config(data["models.config"]).model_config_list.config
        assert (model.name, model.base_path) == (MODEL_NAME, reference.base_path)
        (version,) = model.model_version_policy.specific.versions
        assert dict(model.version_labels) == {track: version}
        versions[track] = version
        path = tmp_path / f"{track}-monitoring.config"
        path.write_text(data["monitoring.config"])
        deployment = _by_track("Deployment")[track]
        assert (
            load_monitoring_path(str(path))
            == (deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"])
        )
        flags = dict(a[2:].split("=", 1) for a in _container(deployment)["args"])
        mount = {m["name"]: m["mountPath"] for m in _container(deployment)["volumeMounts"]}
        assert PurePosixPath(flags["model_config_file"]) == PurePosixPath(
            mount["config"], "models.config"
        )
    assert versions[CANARY] != versions[STABLE]
    assert all(re.fullmatch(r"\d{10}", str(v)) for v in versions.values())  # Pusher's unix time
