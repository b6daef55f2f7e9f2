"""Compile create_pipeline(config) with KubeflowV2DagRunner into a KFP v2 PipelineSpec (or a
Vertex AI PipelineJob), with per-step resources and environment applied."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from pipeline.kubeflow.config import DEFAULT_SPEC_PATH, HEAVY_NODES, KubeflowConfig
from pipeline.kubeflow.resources import cpu_cores, memory_gb
from pipeline.kubeflow.validation import KubeflowConfigError, validate


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
    from pipeline import pipeline as pipeline_lib

    validate(kcfg)
    with _user_modules_from_image(not kcfg.package_user_modules):
        return pipeline_lib.create_pipeline(kcfg.to_pipeline_config())


def compile_pipeline_job(kcfg: KubeflowConfig) -> dict[str, Any]:
    """The PipelineJob (pipelineSpec + runtimeConfig) as a JSON-ready dict."""
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx import v1 as tfx

    tfx_pipeline = build_pipeline(kcfg)
    node_ids = {component.id for component in tfx_pipeline.components}
    # A default for a step this mode leaves out (Tuner with --skip-tuning) is fine; a typo is not.
    unknown = sorted(set(kcfg.resources) - node_ids - set(HEAVY_NODES))
    if unknown:
        raise KubeflowConfigError(
            f"resources for {unknown}: no such component (have {sorted(node_ids)})"
        )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            display_name=kcfg.pipeline.pipeline_name,
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
    apply_resources(spec, kcfg)
    job["pipelineSpec"] = json_format.MessageToDict(spec)
    return job


def apply_resources(spec: Any, kcfg: KubeflowConfig) -> None:
    """Requests = limits per executor (both the numeric and the string fields, which different
    KFP backend versions read), and the configured environment."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    container_spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec
    # deploymentSpec is a Struct in PipelineSpec: go through the typed container spec.
    deployment = json_format.MessageToDict(spec.deployment_spec)
    for task_name, task in spec.root.dag.tasks.items():
        executor_label = spec.components[task.component_ref.name].executor_label
        executor = deployment["executors"][executor_label]
        if "container" not in executor:
            continue  # importer / resolver steps run no pod of ours
        container = json_format.ParseDict(executor["container"], container_spec())
        res = kcfg.resources.get(task_name, kcfg.default_resources)
        r = container.resources
        r.cpu_limit = r.cpu_request = cpu_cores(res.cpu)
        r.memory_limit = r.memory_request = memory_gb(res.memory)
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
        header = (
            f"# PIPELINE DEFINITION\n# Name: {spec['pipelineInfo']['name']}\n"
            "# Compiled by runners/kubeflow_runner.py from pipeline.pipeline.create_pipeline\n"
        )
        path.write_text(header + yaml.safe_dump(spec, sort_keys=True))
    elif path.suffix == ".json":
        path.write_text(json.dumps(job, indent=2, sort_keys=True))
    else:
        raise KubeflowConfigError(f"spec path {str(path)!r}: use a .yaml or .json file name")
    return path


def compile_pipeline(
    kcfg: KubeflowConfig, output_path: str | os.PathLike = DEFAULT_SPEC_PATH
) -> Path:
    """Validate, compile and write the spec; return its path."""
    return write_spec(compile_pipeline_job(kcfg), output_path)
