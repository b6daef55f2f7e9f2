"""Compile the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines, and optionally submit it.

    python runners/kubeflow_runner.py                       # compile with the defaults, print where
    python runners/kubeflow_runner.py --image REG/tfx-taxi-pipeline:TAG \\
        --pipeline-root gs://BUCKET/tfx --data-root gs://BUCKET/data/taxi \\
        --serving-model-dir gs://BUCKET/serving_model/taxi \\
        --beam-arg=--runner=DataflowRunner --beam-arg=--project=P --beam-arg=--region=R \\
        --beam-arg=--temp_location=gs://BUCKET/tmp
    python runners/kubeflow_runner.py ... --submit --endpoint http://localhost:8080

It builds the very same `create_pipeline(config)` as the local runner; only the places differ:
artifacts live under a bucket, the executors run in the pipeline image (deploy/pipeline/Dockerfile,
`make image`), and ML Metadata is the cluster's. Everything is checked before compiling, so a typo
in an image reference or bucket fails here rather than an hour into a cluster run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import config as config_lib  # noqa: E402

PROJECT_ROOT = config_lib.PROJECT_ROOT
# Where deploy/pipeline/Dockerfile puts this repository inside the image.
IMAGE_PROJECT_ROOT = "/pipeline"
# `make image` builds and pushes this unless IMAGE=... is given; keep the two in step.
DEFAULT_IMAGE = "localhost:5000/tfx-taxi-pipeline:0.1.0"
DEFAULT_PIPELINE_ROOT = "s3://mlpipeline/tfx"
DEFAULT_SPEC_PATH = str(PROJECT_ROOT / "tfx_pipeline_output" / "kubeflow" / "taxi-pipeline.yaml")

# Every executor reads and writes artifact URIs itself through tf.io.gfile, so the pipeline root
# must be a filesystem TensorFlow can open in the pod: GCS natively, S3 (and MinIO through its S3
# API) with tensorflow-io, which the image installs.
SUPPORTED_ROOT_SCHEMES = ("gs", "s3")
BUCKET_SCHEMES = SUPPORTED_ROOT_SCHEMES
# Values a run can override (KFP UI "Run parameters", `--param NAME=VALUE`) without recompiling.
RUNTIME_PARAMETERS = ("data_root", "schema_path")
# The drift check reads earlier runs' statistics through a plain history Channel on StatisticsGen's
# output. It compiles for KFP v2, but how a KFP backend resolves a channel on a node of the same
# pipeline (history, or this run's own edge: drift 0) is unverified without a cluster, so it stays
# a local-runner check until it is; the schema checks and the data gate run everywhere.
# user_code_by_import=False: module_file, as the image's steps and their tests expect.
KUBEFLOW_PINNED_SETTINGS = {"check_drift": False, "user_code_by_import": False}
# Steps that get more than the default resources unless configured otherwise.
HEAVY_NODES = ("Transform", "Tuner", "Trainer", "Evaluator")

# KubeflowV2DagRunner's own rule for pipeline names (tfx.orchestration.kubeflow.v2.pipeline_builder).
_PIPELINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
# The image reference grammar of github.com/distribution/reference: [domain[:port]/]path[:tag][@digest].
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[_.]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_CPU = re.compile(r"([0-9]*[.])?[0-9]+m?")
_MEMORY = re.compile(r"([0-9]*[.])?[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?")
_MEMORY_UNITS = {
    "": 1e-9, "K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3, "P": 1e6, "E": 1e9,
    "Ki": 2**10 / 1e9, "Mi": 2**20 / 1e9, "Gi": 2**30 / 1e9, "Ti": 2**40 / 1e9,
    "Pi": 2**50 / 1e9, "Ei": 2**60 / 1e9,
}


class KubeflowConfigError(ValueError):
    """Raised before compiling; the message lists every problem found."""


@dataclasses.dataclass(frozen=True)
class Resources:
    """Kubernetes requests = limits for one component's pod (KFP ResourceSpec)."""

    cpu: str = "1"
    memory: str = "4Gi"

    @classmethod
    def parse(cls, text: str) -> Resources:
        """'CPU,MEMORY', e.g. '2,8Gi' or '500m,2G'."""
        cpu, _, memory = text.partition(",")
        return cls(cpu=cpu.strip(), memory=memory.strip() or cls.memory)


def _image_path(relative: str) -> str:
    return f"{IMAGE_PROJECT_ROOT}/{relative}"


@dataclasses.dataclass(frozen=True)
class KubeflowConfig:
    """What differs on a cluster; `to_pipeline_config` turns it into the shared PipelineConfig.

    Paths are bucket URIs or absolute paths inside the image (this repo is at IMAGE_PROJECT_ROOT
    there), never paths on the machine that compiles.
    """

    pipeline_name: str = "taxi-pipeline"
    image: str = DEFAULT_IMAGE
    pipeline_root: str = DEFAULT_PIPELINE_ROOT
    data_root: str = _image_path("data/taxi")
    schema_path: str = _image_path("schema/schema.pbtxt")
    # TF Serving's model base path; the Pusher writes <this>/<version>/ (see deploy/serving).
    serving_model_dir: str = "s3://mlpipeline/serving_model/taxi"
    preprocessing_module: str = _image_path("modules/preprocessing.py")
    trainer_module: str = _image_path("modules/trainer.py")
    tuner_module: str = _image_path("modules/tuner.py")
    best_hyperparameters_dir: str = _image_path("modules/best_hyperparameters")
    # Beam options for every Beam-based component, e.g. --runner=DataflowRunner --project=...,
    # or --runner=PortableRunner --job_endpoint=flink-jobserver:8099 --environment_type=...
    beam_args: tuple[str, ...] = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")
    default_resources: Resources = Resources()
    # The heavy steps get more; keys are node ids of create_pipeline's components.
    resources: Mapping[str, Resources] = dataclasses.field(
        default_factory=lambda: {name: Resources(cpu="2", memory="8Gi") for name in HEAVY_NODES}
    )
    # Environment of every step's container, e.g. S3_ENDPOINT / S3_USE_HTTPS / AWS_REGION for a
    # MinIO or S3 pipeline root. It is written into the spec: no secrets here.
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    train_steps: int = config_lib.PipelineConfig.train_steps
    eval_steps: int = config_lib.PipelineConfig.eval_steps
    tuner_trials: int = config_lib.PipelineConfig.tuner_trials
    skip_tuning: bool = False
    infer_schema: bool = False
    enable_cache: bool = True
    # True: TFX packages modules/ into a wheel under the pipeline root at compile time (the
    # compiling machine needs write access to the bucket; module edits need no image rebuild).
    # False: the modules baked into the image are used.
    package_user_modules: bool = False

    def to_pipeline_config(self) -> config_lib.PipelineConfig:
        from tfx import v1 as tfx

        def runtime(name: str, default: str) -> Any:
            return tfx.dsl.experimental.RuntimeParameter(name=name, ptype=str, default=default)

        return config_lib.PipelineConfig(
            **KUBEFLOW_PINNED_SETTINGS,
            pipeline_name=self.pipeline_name,
            data_root=runtime("data_root", self.data_root),
            schema_path=runtime("schema_path", self.schema_path),
            output_dir=self.pipeline_root,
            serving_model_dir=self.serving_model_dir,
            preprocessing_module=self.preprocessing_module,
            trainer_module=self.trainer_module,
            tuner_module=self.tuner_module,
            best_hyperparameters_dir=self.best_hyperparameters_dir,
            beam_args=tuple(self.beam_args),
            train_steps=self.train_steps,
            eval_steps=self.eval_steps,
            tuner_trials=self.tuner_trials,
            skip_tuning=self.skip_tuning,
            infer_schema=self.infer_schema,
            enable_cache=self.enable_cache,
        )

    def runtime_parameter_defaults(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in RUNTIME_PARAMETERS}


def _scheme(uri: str) -> str:
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", uri)
    return match.group(1).lower() if match else ""


def _check_location(problems: list[str], field: str, value: str, must_exist: bool) -> None:
    """A bucket URI, or an absolute path in the image that the image really holds."""
    scheme = _scheme(value)
    if scheme:
        if scheme not in BUCKET_SCHEMES:
            problems.append(f"{field}: scheme {scheme}:// is not readable by the executors ({value!r}); "
                            f"use {', '.join(s + '://' for s in BUCKET_SCHEMES)} or a path in the image")
        elif not re.match(r"[a-z0-9+.-]+://[^/]+", value):
            problems.append(f"{field}: {value!r} names no bucket")
        return
    if not value.startswith("/"):
        problems.append(f"{field}: {value!r} is relative; give a bucket URI or an absolute path in "
                        f"the image (this repository is at {IMAGE_PROJECT_ROOT}/)")
        return
    prefix = IMAGE_PROJECT_ROOT + "/"
    if must_exist and value.startswith(prefix):
        local = PROJECT_ROOT / value[len(prefix):]
        if not local.exists():
            problems.append(f"{field}: {value!r} is not in the image ({local.relative_to(PROJECT_ROOT)} "
                            "does not exist in this repository, which the image copies)")


def _cpu(value: str) -> float:
    if not _CPU.fullmatch(value):
        raise ValueError(f"cpu {value!r}: expected e.g. '2', '0.5' or '500m'")
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def _memory_gb(value: str) -> float:
    match = _MEMORY.fullmatch(value)
    if not match:
        raise ValueError(f"memory {value!r}: expected e.g. '8Gi', '512Mi' or '4G'")
    unit = match.group(2) or ""
    return float(value[: len(value) - len(unit)]) * _MEMORY_UNITS[unit]


def validate(kcfg: KubeflowConfig) -> None:
    """Raise KubeflowConfigError listing everything that would make the spec wrong or unrunnable."""
    problems: list[str] = []
    if not _PIPELINE_NAME.fullmatch(kcfg.pipeline_name):
        problems.append(f"pipeline name {kcfg.pipeline_name!r}: Kubeflow needs lowercase letters, "
                        "digits and '-', starting with a letter or digit, at most 128 characters")
    if not _IMAGE_REFERENCE.fullmatch(kcfg.image):
        problems.append(f"image {kcfg.image!r} is not a valid image reference "
                        "([registry[:port]/]name[:tag][@sha256:digest], lowercase name)")
    root_scheme = _scheme(kcfg.pipeline_root)
    if root_scheme not in SUPPORTED_ROOT_SCHEMES:
        hint = ""
        if root_scheme == "minio":
            hint = " (for MinIO use s3://BUCKET/... and set S3_ENDPOINT, see docs/kubeflow.md)"
        problems.append(f"pipeline root {kcfg.pipeline_root!r}: unsupported scheme "
                        f"{(root_scheme or 'none') + '://' if root_scheme else '(a local path)'}; use "
                        f"{' or '.join(s + '://BUCKET/...' for s in SUPPORTED_ROOT_SCHEMES)}{hint}")
    elif not re.match(r"[a-z0-9]+://[^/]+", kcfg.pipeline_root):
        problems.append(f"pipeline root {kcfg.pipeline_root!r} names no bucket")
    _check_location(problems, "data root", kcfg.data_root, must_exist=True)
    _check_location(problems, "schema", kcfg.schema_path, must_exist=True)
    _check_location(problems, "serving model dir", kcfg.serving_model_dir, must_exist=False)
    for field in ("preprocessing_module", "trainer_module", "tuner_module", "best_hyperparameters_dir"):
        value = getattr(kcfg, field)
        if kcfg.package_user_modules and field.endswith("_module"):
            if not Path(value).is_file():
                problems.append(f"{field}: {value!r} must be a local file when packaging user modules")
        else:
            _check_location(problems, field, value, must_exist=True)
    for name in kcfg.env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.append(f"environment variable name {name!r} is not valid")
    for arg in kcfg.beam_args:
        if not arg.startswith("--"):
            problems.append(f"Beam arg {arg!r} must look like --name=value")
    for name, res in [("default", kcfg.default_resources), *kcfg.resources.items()]:
        for parse, value in ((_cpu, res.cpu), (_memory_gb, res.memory)):
            try:
                parse(value)
            except ValueError as e:
                problems.append(f"resources for {name}: {e}")
    if problems:
        raise KubeflowConfigError("Kubeflow configuration is not valid:\n  " + "\n  ".join(problems))


@contextlib.contextmanager
def _user_modules_from_image(enabled: bool) -> Iterator[None]:
    """TFX components decide at construction time whether to wheel-package module files into the
    pipeline root; with modules baked into the image that would need the bucket at compile time
    and a local copy of every module path, so switch it off while the pipeline is built."""
    key = "UNSUPPORTED_DO_NOT_PACKAGE_USER_MODULES"
    saved = os.environ.get(key)
    if enabled:
        os.environ[key] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def build_pipeline(kcfg: KubeflowConfig):
    """create_pipeline over this configuration, without a metadata connection (the cluster's)."""
    from pipeline.pipeline import create_pipeline

    validate(kcfg)
    with _user_modules_from_image(not kcfg.package_user_modules):
        return create_pipeline(kcfg.to_pipeline_config())


def compile_pipeline_job(kcfg: KubeflowConfig) -> dict[str, Any]:
    """The PipelineJob (pipelineSpec + runtimeConfig) as a JSON-ready dict."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx import v1 as tfx

    tfx_pipeline = build_pipeline(kcfg)
    node_ids = {component.id for component in tfx_pipeline.components}
    # A default for a step this mode leaves out (Tuner with --skip-tuning) is fine; a typo is not.
    unknown = sorted(set(kcfg.resources) - node_ids - set(HEAVY_NODES))
    if unknown:
        raise KubeflowConfigError(f"resources for {unknown}: no such component (have {sorted(node_ids)})")
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            display_name=kcfg.pipeline_name,
            default_image=kcfg.image,
            # Schema 2.1: what the KFP 2 backend accepts; Vertex AI takes it too.
            use_pipeline_spec_2_1=True,
        )
    )
    job = runner.run(
        tfx_pipeline, parameter_values=kcfg.runtime_parameter_defaults(), write_out=False
    )
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    # The runner keeps the root only in the PipelineJob's runtimeConfig; the KFP backend reads
    # a YAML PipelineSpec, so put it (and each runtime parameter's default) into the spec.
    spec.default_pipeline_root = tfx_pipeline.pipeline_info.pipeline_root
    for name, default in kcfg.runtime_parameter_defaults().items():
        if name in spec.root.input_definitions.parameters:
            spec.root.input_definitions.parameters[name].default_value.string_value = default
    _apply_resources(spec, kcfg)
    job["pipelineSpec"] = json_format.MessageToDict(spec)
    return job


def _apply_resources(spec: Any, kcfg: KubeflowConfig) -> None:
    """Requests = limits per executor (both the numeric and the string fields, which different
    KFP backend versions read), and the configured environment."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    # deploymentSpec is a Struct in PipelineSpec: go through the typed container spec.
    deployment = json_format.MessageToDict(spec.deployment_spec)
    for task_name, task in spec.root.dag.tasks.items():
        executor_label = spec.components[task.component_ref.name].executor_label
        executor = deployment["executors"][executor_label]
        if "container" not in executor:
            continue  # importer / resolver steps run no pod of ours
        container = json_format.ParseDict(
            executor["container"], pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec()
        )
        res = kcfg.resources.get(task_name, kcfg.default_resources)
        r = container.resources
        r.cpu_limit = r.cpu_request = _cpu(res.cpu)
        r.memory_limit = r.memory_request = _memory_gb(res.memory)
        r.resource_cpu_limit = r.resource_cpu_request = res.cpu
        r.resource_memory_limit = r.resource_memory_request = res.memory
        for name, value in sorted(kcfg.env.items()):
            container.env.add(name=name, value=value)
        executor["container"] = json_format.MessageToDict(container)
    spec.deployment_spec.Clear()
    spec.deployment_spec.update(deployment)


def write_spec(job: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """.yaml/.yml: the PipelineSpec (KFP UI and client upload). .json: the whole PipelineJob
    (Vertex AI's `PipelineJob(template_path=...)`, runtime config included)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".yaml", ".yml"):
        spec = job["pipelineSpec"]
        header = (f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n"
                  "# Compiled by runners/kubeflow_runner.py from pipeline.pipeline.create_pipeline\n")
        path.write_text(header + yaml.safe_dump(spec, sort_keys=True))
    elif path.suffix == ".json":
        path.write_text(json.dumps(job, indent=2, sort_keys=True))
    else:
        raise KubeflowConfigError(f"spec path {str(path)!r}: use a .yaml or .json file name")
    return path


def compile_pipeline(kcfg: KubeflowConfig, output_path: str | os.PathLike = DEFAULT_SPEC_PATH) -> Path:
    return write_spec(compile_pipeline_job(kcfg), output_path)


def submit(
    spec_path: str | os.PathLike,
    endpoint: str,
    kcfg: KubeflowConfig,
    *,
    experiment: str = "taxi",
    run_name: str | None = None,
    params: Mapping[str, str] | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
    client_factory: Any = None,
) -> Any:
    """Upload the spec as a new version of the pipeline (created on first use) and start a run."""
    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    client = client_factory(host=endpoint, namespace=namespace)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    pipeline_id = client.get_pipeline_id(kcfg.pipeline_name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(
            str(spec_path), pipeline_name=kcfg.pipeline_name,
            description="TFX Chicago taxi pipeline (tfx-taxi-mlops)", namespace=namespace,
        ).pipeline_id
    version = client.upload_pipeline_version(
        str(spec_path), pipeline_version_name=f"{kcfg.pipeline_name}-{stamp}", pipeline_id=pipeline_id
    )
    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
    return client.run_pipeline(
        experiment_id=experiment_id,
        job_name=run_name or f"{kcfg.pipeline_name}-{stamp}",
        params={**kcfg.runtime_parameter_defaults(), **(params or {})},
        pipeline_id=pipeline_id,
        version_id=version.pipeline_version_id,
        pipeline_root=f"{kcfg.pipeline_root.rstrip('/')}/{kcfg.pipeline_name}",
        enable_caching=kcfg.enable_cache,
        service_account=service_account,
    )


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return key, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    d = KubeflowConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pipeline-name", default=d.pipeline_name)
    p.add_argument("--image", default=d.image, help="pipeline image (make image IMAGE=...)")
    p.add_argument("--pipeline-root", default=d.pipeline_root, help="gs://... or s3://... (MinIO)")
    p.add_argument("--data-root", default=d.data_root, help="holds span-N/*.csv (bucket or image path)")
    p.add_argument("--schema-path", default=d.schema_path)
    p.add_argument("--serving-model-dir", default=d.serving_model_dir,
                   help="Pusher destination = TF Serving's model base path")
    p.add_argument("--module-dir", default=None,
                   help=f"where modules/*.py are (default {IMAGE_PROJECT_ROOT}/modules in the image)")
    p.add_argument("--package-user-modules", action="store_true",
                   help="wheel-package local modules/ into the pipeline root at compile time")
    p.add_argument("--beam-arg", action="append", default=None,
                   help="Beam pipeline arg, repeatable; replaces the default DirectRunner args")
    p.add_argument("--resources", action="append", default=[], type=_key_value, metavar="NODE=CPU,MEM",
                   help="e.g. Trainer=4,16Gi (default for the rest: --default-resources)")
    p.add_argument("--default-resources", default=f"{d.default_resources.cpu},{d.default_resources.memory}")
    p.add_argument("--env", action="append", default=[], type=_key_value, metavar="NAME=VALUE",
                   help="environment of every step, e.g. S3_ENDPOINT=minio-service.kubeflow:9000")
    p.add_argument("--train-steps", type=int, default=d.train_steps)
    p.add_argument("--eval-steps", type=int, default=d.eval_steps)
    p.add_argument("--tuner-trials", type=int, default=d.tuner_trials)
    p.add_argument("--skip-tuning", action="store_true")
    p.add_argument("--infer-schema", action="store_true")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--output", default=DEFAULT_SPEC_PATH, help=".yaml (KFP) or .json (PipelineJob)")
    p.add_argument("--submit", action="store_true", help="upload the spec and start a run")
    p.add_argument("--endpoint", help="KFP API, e.g. http://localhost:8080 (port-forwarded ml-pipeline-ui)")
    p.add_argument("--namespace", default=None, help="multi-user KFP: the profile namespace")
    p.add_argument("--experiment", default="taxi")
    p.add_argument("--run-name", default=None)
    p.add_argument("--service-account", default=None)
    p.add_argument("--param", action="append", default=[], type=_key_value, metavar="NAME=VALUE",
                   help=f"runtime parameter for the submitted run ({', '.join(RUNTIME_PARAMETERS)})")
    args = p.parse_args(argv)
    if args.submit and not args.endpoint:
        p.error("--submit needs --endpoint URL")
    unknown = {k for k, _ in args.param} - set(RUNTIME_PARAMETERS)
    if unknown:
        p.error(f"unknown runtime parameter(s) {sorted(unknown)}; have {list(RUNTIME_PARAMETERS)}")
    return args


def build_config(args: argparse.Namespace) -> KubeflowConfig:
    defaults = KubeflowConfig()
    modules = {}
    if args.module_dir or args.package_user_modules:
        module_dir = args.module_dir or str(config_lib.MODULES_DIR)
        modules = {f"{n}_module": os.path.join(module_dir, f"{n}.py")
                   for n in ("preprocessing", "trainer", "tuner")}
    resources = dict(defaults.resources)
    resources.update({k: Resources.parse(v) for k, v in args.resources})
    return dataclasses.replace(
        defaults,
        pipeline_name=args.pipeline_name,
        image=args.image,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        schema_path=args.schema_path,
        serving_model_dir=args.serving_model_dir,
        package_user_modules=args.package_user_modules,
        beam_args=tuple(args.beam_arg) if args.beam_arg is not None else defaults.beam_args,
        default_resources=Resources.parse(args.default_resources),
        resources=resources,
        env=dict(args.env),
        train_steps=args.train_steps,
        eval_steps=args.eval_steps,
        tuner_trials=args.tuner_trials,
        skip_tuning=args.skip_tuning,
        infer_schema=args.infer_schema,
        enable_cache=not args.no_cache,
        **modules,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    kcfg = build_config(args)
    try:
        path = compile_pipeline(kcfg, args.output)
    except KubeflowConfigError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"Pipeline spec: {path}")
    print(f"  image {kcfg.image}, pipeline root {kcfg.pipeline_root}/{kcfg.pipeline_name}")
    if args.submit:
        run = submit(path, args.endpoint, kcfg, experiment=args.experiment, run_name=args.run_name,
                     params=dict(args.param), namespace=args.namespace,
                     service_account=args.service_account)
        print(f"Submitted run {run.run_id} to {args.endpoint} (experiment {args.experiment})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
