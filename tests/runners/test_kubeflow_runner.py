"""The compiled Kubeflow spec, read back through KFP's PipelineSpec protos and compared with the
local pipeline that create_pipeline builds from the same configuration; and the checks that stop a
bad configuration before anything is compiled."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from modules import dataset_spec
from pipeline import kubeflow as kr
from pipeline.pipeline import BEST_HYPERPARAMETERS_IMPORTER, create_pipeline
from runners import kubeflow_runner

IMAGE = "europe-docker.pkg.dev/acme-ml/pipelines/tfx-taxi-pipeline:2024.1"
ROOT = "gs://acme-ml-pipelines/tfx"
DATAFLOW_ARGS = (
    "--runner=DataflowRunner",
    "--project=acme-ml",
    "--region=europe-west4",
    "--temp_location=gs://acme-ml-pipelines/tmp",
)


@pytest.fixture(scope="module")
def kcfg() -> kr.KubeflowConfig:
    return kr.KubeflowConfig().replace(
        image=IMAGE,
        pipeline_root=ROOT,
        data_root="gs://acme-ml-data/taxi",
        serving_model_dir="gs://acme-ml-models/serving_model/taxi",
        beam_args=DATAFLOW_ARGS,
        resources={"Trainer": kr.Resources(cpu="4", memory="16Gi")},
        env={"AWS_REGION": "eu-west-1", "S3_ENDPOINT": "minio-service.kubeflow:9000"},
    )


@pytest.fixture(scope="module")
def compiled(kcfg, tmp_path_factory) -> tuple[Path, pipeline_spec_pb2.PipelineSpec]:
    path = kr.compile_pipeline(kcfg, tmp_path_factory.mktemp("kfp") / "taxi.yaml")
    return path, _load_spec(path)


def _load_spec(path: Path) -> pipeline_spec_pb2.PipelineSpec:
    return json_format.ParseDict(yaml.safe_load(path.read_text()), pipeline_spec_pb2.PipelineSpec())


def _executors(spec: pipeline_spec_pb2.PipelineSpec) -> dict:
    return json_format.MessageToDict(spec.deployment_spec)["executors"]


def _container(
    spec, task_name: str
) -> pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec:
    label = spec.components[spec.root.dag.tasks[task_name].component_ref.name].executor_label
    return json_format.ParseDict(
        _executors(spec)[label]["container"],
        pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec(),
    )


def _node(task_name: str, node_ids: set[str]) -> str:
    """KFP splits a Resolver into one task per input ('<id>-model-resolver', ...)."""
    if task_name in node_ids:
        return task_name
    owners = [n for n in node_ids if task_name.startswith(n + "-")]
    assert len(owners) == 1, f"task {task_name} belongs to no pipeline node"
    return owners[0]


def _spec_edges(spec, node_ids: set[str]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {n: set() for n in node_ids}
    for name, task in spec.root.dag.tasks.items():
        upstream = set(task.dependent_tasks)
        upstream |= {
            a.task_output_artifact.producer_task
            for a in task.inputs.artifacts.values()
            if a.HasField("task_output_artifact")
        }
        node = _node(name, node_ids)
        edges[node] |= {_node(u, node_ids) for u in upstream} - {node}
    return edges


def _local_edges(kcfg: kr.KubeflowConfig) -> dict[str, set[str]]:
    local = create_pipeline(
        dataclasses.replace(kcfg.to_pipeline_config(), pipeline_name="taxi_local")
    )
    return {c.id: {u.id for u in c.upstream_nodes} for c in local.components}


def test_every_component_and_edge_of_the_local_pipeline(kcfg, compiled):
    _, spec = compiled
    expected = _local_edges(kcfg)
    assert {_node(t, set(expected)) for t in spec.root.dag.tasks} == set(expected)
    assert _spec_edges(spec, set(expected)) == expected
    assert spec.pipeline_info.name == kcfg.pipeline_name
    assert spec.schema_version == "2.1.0"


def test_image_pipeline_root_and_beam_args_as_configured(kcfg, compiled):
    _, spec = compiled
    containers = {
        name: _container(spec, name)
        for name, t in spec.root.dag.tasks.items()
        if "container" in _executors(spec)[spec.components[t.component_ref.name].executor_label]
    }
    # Every step that runs a pod of ours (not the resolver queries) runs the pipeline image.
    assert {"CsvExampleGen", "DataGate", "Transform", "Trainer", "Pusher"} <= set(containers)
    assert {c.image for c in containers.values()} == {IMAGE}
    for name, c in containers.items():
        assert list(c.command) == [
            "python",
            "-m",
            "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
        ], name
        assert tuple(c.args[-len(DATAFLOW_ARGS) :]) == DATAFLOW_ARGS, name
        assert {e.name: e.value for e in c.env} == kcfg.env, name
    assert spec.default_pipeline_root == f"{ROOT}/{kcfg.pipeline_name}"
    # The function component runs from the project installed in the image.
    assert "pipeline.validation.data_gate.DataGate_Executor" in containers["DataGate"].args


def test_runtime_parameters_with_defaults(kcfg, compiled):
    _, spec = compiled
    params = spec.root.input_definitions.parameters
    assert set(params) == set(kr.RUNTIME_PARAMETERS)
    assert params["data_root"].default_value.string_value == "gs://acme-ml-data/taxi"
    assert params["schema_path"].default_value.string_value == "/pipeline/schema/schema.pbtxt"
    assert all(p.parameter_type == pipeline_spec_pb2.ParameterType.STRING for p in params.values())
    tasks = spec.root.dag.tasks
    assert (
        tasks["CsvExampleGen"].inputs.parameters["input_base"].component_input_parameter
        == "data_root"
    )
    assert (
        tasks["ImportSchemaGen"].inputs.parameters["schema_file"].component_input_parameter
        == "schema_path"
    )


def test_paths_point_into_the_image_and_the_bucket(kcfg, compiled):
    _, spec = compiled
    tasks = spec.root.dag.tasks

    def constant(task: str, key: str) -> str:
        return tasks[task].inputs.parameters[key].runtime_value.constant.string_value

    assert constant("Transform", "module_file") == "/pipeline/modules/preprocessing.py"
    assert constant("Trainer", "module_file") == "/pipeline/modules/trainer.py"
    assert constant("Tuner", "module_file") == "/pipeline/modules/tuner.py"
    for relative in ("modules/preprocessing.py", "modules/trainer.py", "modules/tuner.py"):
        assert (kr.PROJECT_ROOT / relative).is_file()
    destination = json.loads(constant("Pusher", "push_destination"))
    assert destination["filesystem"]["base_directory"] == kcfg.serving_model_dir


def test_resources_per_component(compiled):
    _, spec = compiled
    trainer = _container(spec, "Trainer").resources
    assert (trainer.cpu_limit, trainer.resource_memory_limit) == (4.0, "16Gi")
    assert trainer.memory_limit == pytest.approx(16 * 2**30 / 1e9)
    stats = _container(spec, "StatisticsGen").resources
    assert (stats.resource_cpu_request, stats.resource_memory_request) == ("1", "4Gi")


def test_the_kfp_client_accepts_the_yaml_and_vertex_the_json(kcfg, compiled, tmp_path):
    from kfp.client.client import _extract_pipeline_yaml  # what Client.upload_pipeline reads with

    path, spec = compiled
    assert _extract_pipeline_yaml(str(path)).pipeline_spec == spec

    job_path = kr.write_spec(kr.compile_pipeline_job(kcfg), tmp_path / "job.json")
    job = json_format.Parse(job_path.read_text(), pipeline_spec_pb2.PipelineJob())
    assert job.runtime_config.gcs_output_directory == f"{ROOT}/{kcfg.pipeline_name}"
    assert job.runtime_config.parameter_values["data_root"].string_value == kcfg.data_root
    assert (
        json_format.MessageToDict(job.pipeline_spec)["root"]
        == json_format.MessageToDict(spec)["root"]
    )


def test_fast_mode_imports_hyperparameters_from_the_image(kcfg, tmp_path):
    fast = kcfg.replace(skip_tuning=True)
    spec = _load_spec(kr.compile_pipeline(fast, tmp_path / "fast.yaml"))
    expected = _local_edges(fast)
    assert BEST_HYPERPARAMETERS_IMPORTER in expected and "Tuner" not in expected
    assert _spec_edges(spec, set(expected)) == expected
    importer = _executors(spec)[spec.components[BEST_HYPERPARAMETERS_IMPORTER].executor_label][
        "importer"
    ]
    assert importer["artifactUri"]["constant"] == "/pipeline/modules/best_hyperparameters"


def test_cli_without_flags_compiles_the_defaults(tmp_path, capsys, monkeypatch):
    out = tmp_path / "spec.yaml"
    monkeypatch.setattr(kr, "DEFAULT_SPEC_PATH", str(out))
    assert kubeflow_runner.main(["--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and kr.DEFAULT_IMAGE in printed
    spec = _load_spec(out)
    assert _container(spec, "Trainer").image == kr.DEFAULT_IMAGE
    assert spec.default_pipeline_root == f"{kr.DEFAULT_PIPELINE_ROOT}/taxi-pipeline"


def test_submit_uploads_a_version_and_starts_a_run(kcfg, compiled):
    path, _ = compiled
    calls: list[tuple] = []

    class FakeClient:
        def __init__(self, host, namespace=None):
            calls.append(("init", host, namespace))

        def get_pipeline_id(self, name):
            calls.append(("get_pipeline_id", name))
            return None

        def upload_pipeline(self, package, pipeline_name, description=None, namespace=None):
            calls.append(("upload_pipeline", package, pipeline_name))
            return type("P", (), {"pipeline_id": "p-1"})

        def upload_pipeline_version(self, package, pipeline_version_name, pipeline_id):
            calls.append(("upload_pipeline_version", package, pipeline_id))
            return type("V", (), {"pipeline_version_id": "v-1"})

        def create_experiment(self, name, namespace=None):
            calls.append(("create_experiment", name))
            return type("E", (), {"experiment_id": "e-1"})

        def run_pipeline(self, **kw):
            calls.append(("run_pipeline", kw))
            return type("R", (), {"run_id": "r-1"})

    run = kr.submit(
        path,
        "http://kfp.example:8080",
        kcfg,
        params={"data_root": "gs://other/taxi"},
        client_factory=FakeClient,
    )
    assert run.run_id == "r-1"
    assert [c[0] for c in calls] == [
        "init",
        "get_pipeline_id",
        "upload_pipeline",
        "upload_pipeline_version",
        "create_experiment",
        "run_pipeline",
    ]
    assert calls[0][1] == "http://kfp.example:8080"
    kw = calls[-1][1]
    assert (kw["pipeline_id"], kw["version_id"], kw["experiment_id"]) == ("p-1", "v-1", "e-1")
    assert kw["params"] == {"data_root": "gs://other/taxi", "schema_path": kcfg.schema_path}
    assert kw["pipeline_root"] == f"{ROOT}/{kcfg.pipeline_name}"


def test_submit_requires_an_endpoint(capsys):
    with pytest.raises(SystemExit) as exit_:
        kubeflow_runner.main(["--submit"])
    assert exit_.value.code == 2
    assert "--endpoint" in capsys.readouterr().err


def test_dataset_flag_compiles_that_datasets_pipeline_with_image_paths():
    """--dataset works as in the local runner: the spec's names, its data and schema as paths
    inside the image, its model's own serving directory in the bucket."""
    from pipeline.kubeflow import flags

    kcfg = flags.kubeflow_config(flags.parser().parse_args(["--dataset", "penguins"]))
    assert kcfg.pipeline_name == "penguins-pipeline"
    assert kcfg.data_root == kr.image_path("data/penguins")
    assert kcfg.schema_path.startswith(kr.IMAGE_PROJECT_ROOT + "/datasets/penguins/")
    assert kcfg.serving_model_dir.endswith("/serving_model/penguins")
    assert kcfg.trainer_module == kr.image_path("modules/trainer.py")


# --- bad configuration: a clear error before anything is compiled --------------------------------


@pytest.fixture
def no_compile(monkeypatch):
    """Fail the test if a bad config gets as far as building the pipeline."""
    import pipeline.pipeline

    def forbidden(*args, **kwargs):
        raise AssertionError("create_pipeline was called for an invalid configuration")

    monkeypatch.setattr(pipeline.pipeline, "create_pipeline", forbidden)


@pytest.mark.parametrize(
    "image",
    [
        "Taxi-Pipeline:1",
        "registry.example.com/taxi:bad tag",
        "taxi:",
        "taxi@sha256:xyz",
        "/taxi:1",
        "registry.example.com:port/taxi",
        "taxi::1",
        "",
    ],
)
def test_malformed_image_reference_is_rejected(image, no_compile, tmp_path):
    with pytest.raises(kr.KubeflowConfigError, match="image .* is not a valid image reference"):
        kr.compile_pipeline(kr.KubeflowConfig().replace(image=image), tmp_path / "x.yaml")
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize(
    "image",
    [
        "tensorflow/tfx:1.16.0",
        "localhost:5000/tfx-taxi-pipeline:0.1.0",
        "gcr.io/p/a/b",
        "registry.example.com/team/taxi@sha256:" + "a" * 64,
        "taxi",
    ],
)
def test_valid_image_references_pass(image):
    """The grammar accepts them and the whole validation passes with each."""
    from pipeline.kubeflow.image_reference import is_image_reference

    assert is_image_reference(image)
    assert kr.validate(kr.KubeflowConfig().replace(image=image)) is None


@pytest.mark.parametrize(
    ("root", "hint"),
    [
        ("minio://mlpipeline/v2/artifacts", "S3_ENDPOINT"),
        ("/tmp/pipeline-root", "local path"),
        ("https://storage.example.com/b", "https://"),
        ("hdfs://namenode/tfx", "hdfs://"),
        ("gs:///no-bucket", "names no bucket"),
    ],
)
def test_unsupported_pipeline_root_is_rejected(root, hint, no_compile):
    with pytest.raises(kr.KubeflowConfigError, match="pipeline root") as e:
        kr.compile_pipeline(kr.KubeflowConfig().replace(pipeline_root=root))
    assert hint in str(e.value)


@pytest.mark.parametrize("name", ["taxi_pipeline", "Taxi", "-taxi", "taxi pipeline", "t" * 129, ""])
def test_pipeline_name_kfp_rejects_is_rejected(name, no_compile):
    with pytest.raises(kr.KubeflowConfigError, match="pipeline name"):
        kr.compile_pipeline(kr.KubeflowConfig().replace(pipeline_name=name))


def test_every_problem_is_reported_at_once():
    bad = kr.KubeflowConfig().replace(
        pipeline_name="taxi_pipeline",
        image="UPPER/case",
        pipeline_root="/x",
        data_root="data/taxi",
        trainer_module="/pipeline/modules/missing.py",
        beam_args=("runner=DataflowRunner",),
        default_resources=kr.Resources(cpu="two", memory="8GB"),
    )
    with pytest.raises(kr.KubeflowConfigError) as e:
        kr.validate(bad)
    message = str(e.value)
    for expected in (
        "pipeline name",
        "image",
        "pipeline root",
        "data root: 'data/taxi' is relative",
        "trainer_module: '/pipeline/modules/missing.py' is not in the image",
        "Beam arg",
        "cpu 'two'",
        "memory '8GB'",
    ):
        assert expected in message


def test_unknown_component_in_resources_is_rejected(tmp_path):
    cfg = kr.KubeflowConfig().replace(resources={"Trainr": kr.Resources()})
    with pytest.raises(kr.KubeflowConfigError, match="Trainr"):
        kr.compile_pipeline(cfg, tmp_path / "x.yaml")


def test_settings_unverified_on_kubeflow_are_pinned(kcfg):
    """The drift check's history channel is unverified on a KFP backend: local-runner only."""
    config = kcfg.to_pipeline_config()
    assert kr.KUBEFLOW_PINNED_SETTINGS
    for name, value in kr.KUBEFLOW_PINNED_SETTINGS.items():
        assert getattr(config, name) == value


# --- every pipeline setting reaches the cluster ------------------------------------------------


def _parameter(spec, task_name: str, name: str):
    """A task's compiled-in exec property, decoded from the JSON text TFX writes."""
    text = spec.root.dag.tasks[task_name].inputs.parameters[name].runtime_value.constant
    return json.loads(text.string_value)


def _lower_bounds(eval_config: dict) -> dict[str, float]:
    """Metric name -> value threshold's lower bound, and '<name> gain' -> change threshold."""
    found = {}
    for spec in eval_config["metrics_specs"]:
        for metric in spec["metrics"]:
            for per_slice in metric.get("per_slice_thresholds", []):
                threshold = per_slice["threshold"]
                if "value_threshold" in threshold:
                    found[metric["class_name"]] = threshold["value_threshold"]["lower_bound"]
                if "change_threshold" in threshold:
                    found[metric["class_name"] + " gain"] = threshold["change_threshold"][
                        "absolute"
                    ]
    return found


def test_thresholds_and_tuner_budget_set_through_the_runner_reach_the_spec(tmp_path, capsys):
    """KubeflowConfig holds the whole PipelineConfig: nothing is dropped on the way to the spec
    (the runner used to copy fields by hand and lost the tuner budget and the thresholds)."""
    out = tmp_path / "spec.yaml"
    assert (
        kubeflow_runner.main(
            [
                "--output",
                str(out),
                "--tuner-trials",
                "3",
                "--tuner-train-steps",
                "77",
                "--tuner-eval-steps",
                "7",
                "--train-steps",
                "123",
                "--min-auc",
                "0.61",
                "--min-accuracy",
                "0.62",
                "--min-auc-gain",
                "0.03",
            ]
        )
        == 0
    )
    spec = _load_spec(out)
    assert _parameter(spec, "Tuner", "train_args") == {"num_steps": 77}
    assert _parameter(spec, "Tuner", "eval_args") == {"num_steps": 7}
    # The dataset spec travels with the user code's settings (modules/dataset_spec.py).
    assert _parameter(spec, "Tuner", "custom_config") == {
        "dataset": dataset_spec.load("taxi").to_config(),
        "max_trials": 3,
    }
    assert _parameter(spec, "Trainer", "train_args") == {"num_steps": 123}
    bounds = _lower_bounds(_parameter(spec, "Evaluator", "eval_config"))
    assert bounds == {"AUC": 0.61, "BinaryAccuracy": 0.62, "AUC gain": 0.03}


def test_every_pipeline_config_field_reaches_create_pipeline():
    """Apart from the pinned settings and the runtime parameters, to_pipeline_config() is the
    contained PipelineConfig itself, field for field."""
    from pipeline.config import EvalThresholds

    kcfg = kr.KubeflowConfig().replace(
        thresholds=EvalThresholds(min_auc=0.7, min_accuracy=0.6, min_auc_gain=0.01),
        tuner_train_steps=11,
        tuner_eval_steps=3,
        slice_features=("trip_start_hour",),
    )
    config = kcfg.to_pipeline_config()
    for field in dataclasses.fields(config):
        if field.name in kr.KUBEFLOW_PINNED_SETTINGS or field.name in kr.RUNTIME_PARAMETERS:
            continue
        assert getattr(config, field.name) == getattr(kcfg.pipeline, field.name), field.name
    assert config.thresholds.min_auc == 0.7 and config.tuner_eval_steps == 3


def test_submit_without_a_reachable_cluster_is_one_line(tmp_path, capsys):
    """A KFP endpoint nobody listens on: one line on stderr, exit 2, no traceback (the runner's
    main, in this process: the interpreter's start-up is not what is tested)."""
    import socket

    from runners import kubeflow_runner

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    argv = ["--output", str(tmp_path / "spec.yaml"), "--submit"]
    code = kubeflow_runner.main([*argv, "--endpoint", f"http://127.0.0.1:{port}"])
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], stderr[-2000:]
    assert (tmp_path / "spec.yaml").is_file()  # compiled before the submission failed


def test_kubeflow_runner_refuses_a_training_window_before_compiling(tmp_path, capsys):
    """--train-spans > 1 is a custom Resolver over ML Metadata, which the KFP v2 compiler cannot
    compile (tests/pipeline/ingest/test_training_window.py shows why): refused in one line."""
    from runners import kubeflow_runner

    out = tmp_path / "spec.yaml"
    code = kubeflow_runner.main(["--output", str(out), "--train-spans", "2"])
    stderr = capsys.readouterr().err
    assert code == 2 and "Traceback" not in stderr, stderr[-2000:]
    assert "train spans 2: the training window is a custom Resolver over ML Metadata" in stderr
    assert "runners/local_runner.py" in stderr
    assert not out.exists()
