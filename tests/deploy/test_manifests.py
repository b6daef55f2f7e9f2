"""The deployment files, checked without a cluster or a Docker engine: Kubernetes manifests
against the Kubernetes OpenAPI schemas (kubernetes-validate, bundled, offline), the compose file
against the Compose specification (compose-spec), and both against what the pipeline and the
serving code agree on: model name, model base path, ports, config files. Plus the pipeline image's
Dockerfile against the pins and the Kubeflow runner's image paths."""

from __future__ import annotations

import copy
import dataclasses
import re
import shlex
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose

from metadata.locations import locations
from modules import dataset_spec
from pipeline import kubeflow as kr
from pipeline.config import PipelineConfig
from serving.config import ServerOptions, load_model_config_file, parse_model_config
from tests.paths import PROJECT_ROOT

SERVING = PROJECT_ROOT / "deploy" / "serving"
K8S = SERVING / "kubernetes.yaml"
COMPOSE = SERVING / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "deploy" / "pipeline" / "Dockerfile"
MODEL_NAME = PipelineConfig().model_name
# One server for every model: each dataset under datasets/ has its entry, at its serving dir.
MODELS = {
    locations(name).model_name: Path(locations(name).serving_dir)
    for name in dataset_spec.available()
}
GRPC_PORT, REST_PORT = ServerOptions.port, ServerOptions.rest_api_port
K8S_VERSIONS = [kubernetes_validate.latest_version(), "1.29.0"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[name.lower()] = version
    return pins


def _docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(K8S.read_text()) if d]


def _one(kind: str) -> dict:
    found = [d for d in _docs() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in {K8S.name}"
    return found[0]


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def _serving_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["image"].startswith("tensorflow/serving")]
    return container


def _config_files(deployment: dict) -> dict[str, str]:
    """Mount path of each ConfigMap key -> its text, as the pod sees it."""
    config_maps = {d["metadata"]["name"]: d["data"] for d in _docs() if d["kind"] == "ConfigMap"}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    files = {}
    for mount in _serving_container(deployment)["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, text in config_maps[volume["configMap"]["name"]].items():
                files[str(PurePosixPath(mount["mountPath"], key))] = text
    return files


# --- Kubernetes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_is_valid_kubernetes(version):
    docs = _docs()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_broken_manifests():
    deployment = _one("Deployment")
    typo = copy.deepcopy(deployment)
    container = _serving_container(typo)
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(typo, K8S_VERSIONS[0], strict=True)
    bad_port = copy.deepcopy(deployment)
    _serving_container(bad_port)["ports"][0]["containerPort"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad_port, K8S_VERSIONS[0], strict=True)


def test_deployment_serves_the_pipelines_model_on_the_serving_ports():
    deployment = _one("Deployment")
    container = _serving_container(deployment)
    assert container["image"] == f"tensorflow/serving:{_pins()['tensorflow-serving-api']}"
    flags = _flags(container.get("args", []) + container.get("command", []))
    assert (int(flags["port"]), int(flags["rest_api_port"])) == (GRPC_PORT, REST_PORT)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert sorted(ports.values()) == [GRPC_PORT, REST_PORT]

    files = _config_files(deployment)
    model_config = parse_model_config(files[flags["model_config_file"]])
    entries = {m.name: m for m in model_config.model_config_list.config}
    assert set(entries) == set(MODELS) and MODEL_NAME in MODELS
    for flag in ("batching_parameters_file", "monitoring_config_file"):
        if flag in flags:
            assert flags[flag] in files, f"--{flag} names a file no ConfigMap provides"
    # The ConfigMap carries the same model config as the file compose and `mlops serve` use.
    assert model_config == parse_model_config((SERVING / "models.config").read_text())

    # Every base path is on a mounted volume (or a bucket TF Serving reads directly).
    for model in entries.values():
        _assert_on_a_claimed_volume(deployment, container, model)


def _assert_on_a_claimed_volume(deployment, container, model) -> None:
    if "://" not in model.base_path:
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = [
            m
            for m in container["volumeMounts"]
            if PurePosixPath(model.base_path).is_relative_to(m["mountPath"])
        ]
        assert mounts, f"{model.base_path} is on no volume"
        assert "persistentVolumeClaim" in volumes[mounts[0]["name"]]
        claims = {d["metadata"]["name"] for d in _docs() if d["kind"] == "PersistentVolumeClaim"}
        assert volumes[mounts[0]["name"]]["persistentVolumeClaim"]["claimName"] in claims
        assert PurePosixPath(model.base_path).name == model.name


def test_readiness_probe_asks_tf_serving_for_the_model_status():
    container = _serving_container(_one("Deployment"))
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == f"/v1/models/{MODEL_NAME}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports.get(probe["port"], probe["port"]) == REST_PORT


def test_resources_requests_and_limits():
    resources = _serving_container(_one("Deployment"))["resources"]
    assert set(resources) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(
        resources["limits"]
    )


def test_service_exposes_grpc_and_rest_to_the_deployments_pods():
    deployment, service = _one("Deployment"), _one("Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container_ports = {
        p["name"]: p["containerPort"] for p in _serving_container(deployment)["ports"]
    }
    exposed = {}
    for port in service["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        exposed[port["port"]] = container_ports.get(target, target)
    assert exposed == {GRPC_PORT: GRPC_PORT, REST_PORT: REST_PORT}


# --- docker compose -------------------------------------------------------------------------------


def _compose_service() -> dict:
    compose = PyCompose.from_yaml(COMPOSE.read_text()).to_dict()
    services = [
        s for s in compose["services"].values() if s["image"].startswith("tensorflow/serving")
    ]
    assert len(services) == 1
    return services[0]


def test_compose_file_is_valid_compose_spec():
    _compose_service()  # PyCompose raises on anything the Compose specification rejects
    broken = yaml.safe_load(COMPOSE.read_text())
    service = next(iter(broken["services"].values()))
    service["ports"] = ["rest:8501"]
    with pytest.raises(ValueError, match="port"):
        PyCompose.from_yaml(yaml.safe_dump(broken))


def test_compose_serves_the_pushers_directory_on_the_serving_ports():
    service = _compose_service()
    assert service["image"] == _serving_container(_one("Deployment"))["image"]
    ports = {tuple(int(x) for x in str(p).split(":")[-2:]) for p in service["ports"]}
    assert ports == {(GRPC_PORT, GRPC_PORT), (REST_PORT, REST_PORT)}

    command = service["command"]
    flags = _flags(command if isinstance(command, list) else shlex.split(command))
    assert (int(flags["port"]), int(flags["rest_api_port"])) == (GRPC_PORT, REST_PORT)
    # Container path -> host path, as compose resolves them (relative to the compose file).
    mounts = {}
    for volume in service["volumes"]:
        source, target = (
            volume.split(":")[:2]
            if isinstance(volume, str)
            else (volume["source"], volume["target"])
        )
        mounts[target] = (COMPOSE.parent / source).resolve()

    def host_path(container_path: str) -> Path:
        for target, source in mounts.items():
            if PurePosixPath(container_path).is_relative_to(target):
                return source / PurePosixPath(container_path).relative_to(target)
        raise AssertionError(f"{container_path} is not mounted")

    model_config_file = host_path(flags["model_config_file"])
    assert model_config_file.is_file()
    models = parse_model_config(model_config_file.read_text()).model_config_list.config
    # TF Serving reads exactly where the local Pusher writes serving_model/<model>/<version>/,
    # every dataset's model from one server.
    assert {m.name: host_path(m.base_path) for m in models} == {
        name: path.resolve() for name, path in MODELS.items()
    }
    assert MODELS[MODEL_NAME] == Path(PipelineConfig().model_serving_dir)
    for flag in ("batching_parameters_file", "monitoring_config_file"):
        if flag in flags:
            assert host_path(flags[flag]).is_file()
    check = service["healthcheck"]["test"]
    check = check if isinstance(check, str) else " ".join(check)
    assert f"/v1/models/{MODEL_NAME}" in check and str(REST_PORT) in check


# --- the pipeline image ---------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_builds_on_the_pinned_tfx_image():
    instructions = _dockerfile()
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    (base,) = [a for i, a in instructions if i == "FROM"]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert base == f"tensorflow/tfx:{_pins()['tfx']}"


def test_dockerfile_copies_what_the_kubeflow_config_points_at():
    instructions = _dockerfile()
    (workdir,) = [a for i, a in instructions if i == "WORKDIR"]
    assert workdir == kr.IMAGE_PROJECT_ROOT
    ignored = [
        ln.strip().rstrip("/")
        for ln in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    copied: dict[PurePosixPath, Path] = {}  # image path -> repository path
    for instruction, arguments in instructions:
        if instruction != "COPY":
            continue
        *sources, dest = arguments.split()
        base = PurePosixPath(workdir) / dest
        for source in sources:
            local = PROJECT_ROOT / source
            assert local.exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"
            # A directory's contents land in dest; files land in dest/ under their own name.
            single_file = local.is_file() and not dest.endswith("/") and len(sources) == 1
            target = base if local.is_dir() or single_file else base / local.name
            copied[target] = local
    defaults = kr.KubeflowConfig()
    for field in (
        "data_root",
        "schema_path",
        "preprocessing_module",
        "trainer_module",
        "tuner_module",
        "best_hyperparameters_dir",
    ):
        path = PurePosixPath(getattr(defaults, field))
        sources = [
            local / path.relative_to(target)
            for target, local in copied.items()
            if path.is_relative_to(target)
        ]
        assert sources, f"{field}: {path} is not copied into the image"
        # ...and the image keeps the repository's layout, so it is the file validate() checked.
        assert sources[0] == PROJECT_ROOT / path.relative_to(kr.IMAGE_PROJECT_ROOT)
        assert sources[0].exists()
    kr.validate(defaults)  # and each of those exists in the repository the image is built from


def test_dockerfile_sets_legacy_keras_like_the_local_runner():
    # The switch has one place (modules/__init__.py); the image's sitecustomize, on PYTHONPATH,
    # imports it before the entrypoint loads TensorFlow (tests/test_environment.py runs it).
    env = " ".join(a for i, a in _dockerfile() if i == "ENV")
    copies = " ".join(a for i, a in _dockerfile() if i == "COPY")
    assert "deploy/pipeline/sitecustomize.py /usr/local/lib/pipeline-site/" in copies
    assert "/usr/local/lib/pipeline-site" in env
    assert "import modules" in (PROJECT_ROOT / "deploy/pipeline/sitecustomize.py").read_text()
    assert f"PYTHONPATH={kr.IMAGE_PROJECT_ROOT}" in env


def test_make_image_builds_the_default_image():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert re.search(rf"^IMAGE \?= {re.escape(kr.DEFAULT_IMAGE)}$", makefile, re.M)
    assert "docker build -f deploy/pipeline/Dockerfile" in makefile
    assert dataclasses.replace(kr.KubeflowConfig()).image == kr.DEFAULT_IMAGE


def test_local_model_config_serves_every_model_where_the_pusher_writes():
    path = SERVING / "models.local.config"

    models = load_model_config_file(str(path)).model_config_list.config
    assert {m.name: Path(m.base_path).resolve() for m in models} == {
        name: p.resolve() for name, p in MODELS.items()
    }
