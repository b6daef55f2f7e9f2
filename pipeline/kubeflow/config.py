"""KubeflowConfig: a PipelineConfig (every pipeline setting, unchanged) plus what only a cluster
needs: the image, per-step resources, the containers' environment.

Paths in the PipelineConfig are bucket URIs or absolute paths inside the image (this repository
is at IMAGE_PROJECT_ROOT there), never paths on the machine that compiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modules.dataset_spec import DEFAULT_DATASET
from pipeline.config import (
    PROJECT_ROOT,
    PipelineConfig,
    dataset_config,
    multi_processing_beam_args,
)
from pipeline.kubeflow.resources import Resources

# Where deploy/pipeline/Dockerfile puts this repository inside the image.
IMAGE_PROJECT_ROOT = "/pipeline"
# `make image` builds and pushes this unless IMAGE=... is given; keep the two in step.
DEFAULT_IMAGE = "localhost:5000/tfx-taxi-pipeline:0.1.0"
DEFAULT_PIPELINE_ROOT = "s3://mlpipeline/tfx"
DEFAULT_SERVING_ROOT = "s3://mlpipeline/serving_model"
DEFAULT_SPEC_PATH = str(PROJECT_ROOT / "tfx_pipeline_output" / "kubeflow" / "taxi-pipeline.yaml")
# Values a run can override (KFP UI "Run parameters", `--param NAME=VALUE`) without recompiling.
RUNTIME_PARAMETERS = ("data_root", "schema_path")
# The drift check reads earlier runs' statistics through a plain history Channel on
# StatisticsGen's output. It compiles for KFP v2, but how a KFP backend resolves a channel on a
# node of the same pipeline (history, or this run's own edge: drift 0) is unverified without a
# cluster, so it stays a local-runner check until it is; the schema checks and the data gate run
# everywhere. user_code_by_import=False: module_file, as the image's steps and their tests expect.
KUBEFLOW_PINNED_SETTINGS = {"check_drift": False, "user_code_by_import": False}
# Steps that get more than the default resources unless configured otherwise.
HEAVY_NODES = ("Transform", "Tuner", "Trainer", "Evaluator")
# KubeflowConfig.replace() names the pipeline root like the runner's flag; PipelineConfig calls
# it output_dir (the pipeline's outputs go to <output_dir>/<pipeline_name>).
_ALIASES = {"pipeline_root": "output_dir"}


def image_path(relative: str) -> str:
    """A path of this repository inside the pipeline image."""
    return f"{IMAGE_PROJECT_ROOT}/{relative}"


def default_pipeline_config(dataset: str = DEFAULT_DATASET) -> PipelineConfig:
    """A dataset's PipelineConfig with the cluster's places: bucket outputs, and every path of
    this repository (data, schema, user code) as its path inside the image."""
    local = dataset_config(dataset)

    def in_image(path: str) -> str:
        inside = Path(path).resolve()
        if not inside.is_relative_to(PROJECT_ROOT):
            return path  # outside the checkout: the validation names it
        return image_path(inside.relative_to(PROJECT_ROOT).as_posix())

    return dataclasses.replace(
        local,
        pipeline_name=local.pipeline_name.replace("_", "-"),
        data_root=in_image(local.data_root),
        schema_path=in_image(local.schema_path),
        output_dir=DEFAULT_PIPELINE_ROOT,
        serving_model_dir=f"{DEFAULT_SERVING_ROOT}/{local.model_name}",
        preprocessing_module=in_image(local.preprocessing_module),
        trainer_module=in_image(local.trainer_module),
        tuner_module=in_image(local.tuner_module),
        best_hyperparameters_dir=in_image(local.best_hyperparameters_dir),
        beam_args=tuple(multi_processing_beam_args()),
    )


@dataclasses.dataclass(frozen=True)
class KubeflowConfig:
    """Everything a Kubeflow compile needs. `pipeline` is passed to create_pipeline as it is
    (thresholds, tuner budget and all), except KUBEFLOW_PINNED_SETTINGS and the runtime
    parameters; pipeline settings also read as attributes (kcfg.data_root)."""

    pipeline: PipelineConfig = dataclasses.field(default_factory=default_pipeline_config)
    image: str = DEFAULT_IMAGE
    default_resources: Resources = Resources()
    # The heavy steps get more; keys are node ids of create_pipeline's components.
    resources: Mapping[str, Resources] = dataclasses.field(
        default_factory=lambda: {name: Resources(cpu="2", memory="8Gi") for name in HEAVY_NODES}
    )
    # Environment of every step's container, e.g. S3_ENDPOINT / S3_USE_HTTPS / AWS_REGION for a
    # MinIO or S3 pipeline root. It is written into the spec: no secrets here.
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # True: TFX packages modules/ into a wheel under the pipeline root at compile time (the
    # compiling machine needs write access to the bucket; module edits need no image rebuild).
    # False: the modules baked into the image are used.
    package_user_modules: bool = False

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not KubeflowConfig's own: the pipeline's settings.
        if name == "pipeline":
            raise AttributeError(name)
        return getattr(self.pipeline, _ALIASES.get(name, name))

    @property
    def pipeline_root(self) -> str:
        """Bucket URI the pipeline's outputs go under (<root>/<pipeline_name>/...)."""
        return self.pipeline.output_dir

    def replace(self, **changes: Any) -> KubeflowConfig:
        """A copy with `changes`: KubeflowConfig's own fields, or PipelineConfig's (any of them;
        `pipeline_root` is PipelineConfig.output_dir)."""
        own = {f.name for f in dataclasses.fields(self)}
        pipeline_changes = {_ALIASES.get(k, k): v for k, v in changes.items() if k not in own}
        kept = {k: v for k, v in changes.items() if k in own}
        pipeline = kept.pop("pipeline", self.pipeline)
        if pipeline_changes:
            pipeline = dataclasses.replace(pipeline, **pipeline_changes)
        return dataclasses.replace(self, pipeline=pipeline, **kept)

    def to_pipeline_config(self) -> PipelineConfig:
        """The PipelineConfig create_pipeline gets: `pipeline` with the settings pinned on
        Kubeflow and the runtime parameters (data root, schema) as RuntimeParameters."""
        from tfx import v1 as tfx

        runtime = {
            name: tfx.dsl.experimental.RuntimeParameter(name=name, ptype=str, default=default)
            for name, default in self.runtime_parameter_defaults().items()
        }
        return dataclasses.replace(self.pipeline, **KUBEFLOW_PINNED_SETTINGS, **runtime)

    def runtime_parameter_defaults(self) -> dict[str, str]:
        """RUNTIME_PARAMETERS and their compiled-in values."""
        return {name: getattr(self.pipeline, name) for name in RUNTIME_PARAMETERS}
