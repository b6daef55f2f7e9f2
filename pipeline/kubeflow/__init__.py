"""Kubeflow Pipelines v2 / Vertex AI: the same create_pipeline(config), compiled for a cluster.

    config            KubeflowConfig = a PipelineConfig + image, resources, env
    image_reference   the container image reference grammar
    resources         Kubernetes CPU / memory quantities
    validation        everything checked before compiling (KubeflowConfigError)
    compiler          KubeflowV2DagRunner -> PipelineSpec / PipelineJob, resources applied
    submission        upload and start a run through kfp.Client (SubmissionError)

runners/kubeflow_runner.py only turns flags into a KubeflowConfig and calls these.
"""

from pipeline.config import PROJECT_ROOT
from pipeline.kubeflow.compiler import (
    apply_resources,
    build_pipeline,
    compile_pipeline,
    compile_pipeline_job,
    write_spec,
)
from pipeline.kubeflow.config import (
    DEFAULT_IMAGE,
    DEFAULT_PIPELINE_ROOT,
    DEFAULT_SPEC_PATH,
    HEAVY_NODES,
    IMAGE_PROJECT_ROOT,
    KUBEFLOW_PINNED_SETTINGS,
    RUNTIME_PARAMETERS,
    KubeflowConfig,
    default_pipeline_config,
    image_path,
)
from pipeline.kubeflow.resources import Resources
from pipeline.kubeflow.submission import SubmissionError, submit
from pipeline.kubeflow.validation import KubeflowConfigError, validate

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_PIPELINE_ROOT",
    "DEFAULT_SPEC_PATH",
    "HEAVY_NODES",
    "IMAGE_PROJECT_ROOT",
    "PROJECT_ROOT",
    "KUBEFLOW_PINNED_SETTINGS",
    "RUNTIME_PARAMETERS",
    "KubeflowConfig",
    "KubeflowConfigError",
    "Resources",
    "SubmissionError",
    "apply_resources",
    "build_pipeline",
    "compile_pipeline",
    "compile_pipeline_job",
    "default_pipeline_config",
    "image_path",
    "submit",
    "validate",
    "write_spec",
]
