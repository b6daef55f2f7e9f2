"""Check a KubeflowConfig before compiling, so a typo in an image reference or a bucket fails on
the compiling machine rather than an hour into a cluster run."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.config import PROJECT_ROOT
from pipeline.kubeflow.config import IMAGE_PROJECT_ROOT, KubeflowConfig
from pipeline.kubeflow.image_reference import is_image_reference
from pipeline.kubeflow.resources import cpu_cores, memory_gb

# Every executor reads and writes artifact URIs itself through tf.io.gfile, so the pipeline root
# must be a filesystem TensorFlow can open in the pod: GCS natively, S3 (and MinIO through its S3
# API) with tensorflow-io, which the image installs.
SUPPORTED_ROOT_SCHEMES = ("gs", "s3")
BUCKET_SCHEMES = SUPPORTED_ROOT_SCHEMES
# KubeflowV2DagRunner's own rule for pipeline names
# (tfx.orchestration.kubeflow.v2.pipeline_builder).
_PIPELINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
_USER_MODULES = ("preprocessing_module", "trainer_module", "tuner_module")


class KubeflowConfigError(ValueError):
    """Raised before compiling; the message lists every problem found."""


def scheme(uri: str) -> str:
    """The URI's scheme in lowercase ('' for a path)."""
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", uri)
    return match.group(1).lower() if match else ""


def _check_location(problems: list[str], field: str, value: str, must_exist: bool) -> None:
    """A bucket URI, or an absolute path in the image that the image really holds."""
    kind = scheme(value)
    if kind:
        if kind not in BUCKET_SCHEMES:
            problems.append(
                f"{field}: scheme {kind}:// is not readable by the executors ({value!r}); "
                f"use {', '.join(s + '://' for s in BUCKET_SCHEMES)} or a path in the image"
            )
        elif not re.match(r"[a-z0-9+.-]+://[^/]+", value):
            problems.append(f"{field}: {value!r} names no bucket")
        return
    if not value.startswith("/"):
        problems.append(
            f"{field}: {value!r} is relative; give a bucket URI or an absolute path in "
            f"the image (this repository is at {IMAGE_PROJECT_ROOT}/)"
        )
        return
    prefix = IMAGE_PROJECT_ROOT + "/"
    if must_exist and value.startswith(prefix):
        local = PROJECT_ROOT / value[len(prefix) :]
        if not local.exists():
            problems.append(
                f"{field}: {value!r} is not in the image ({local.relative_to(PROJECT_ROOT)} "
                "does not exist in this repository, which the image copies)"
            )


def _check_pipeline_root(problems: list[str], root: str) -> None:
    kind = scheme(root)
    if kind not in SUPPORTED_ROOT_SCHEMES:
        hint = ""
        if kind == "minio":
            hint = " (for MinIO use s3://BUCKET/... and set S3_ENDPOINT, see docs/kubeflow.md)"
        problems.append(
            f"pipeline root {root!r}: unsupported scheme "
            f"{kind + '://' if kind else '(a local path)'}; use "
            f"{' or '.join(s + '://BUCKET/...' for s in SUPPORTED_ROOT_SCHEMES)}{hint}"
        )
    elif not re.match(r"[a-z0-9]+://[^/]+", root):
        problems.append(f"pipeline root {root!r} names no bucket")


def validate(kcfg: KubeflowConfig) -> None:
    """Raise KubeflowConfigError listing everything that would make the spec wrong or
    unrunnable."""
    problems: list[str] = []
    p = kcfg.pipeline
    if not _PIPELINE_NAME.fullmatch(p.pipeline_name):
        problems.append(
            f"pipeline name {p.pipeline_name!r}: Kubeflow needs lowercase letters, "
            "digits and '-', starting with a letter or digit, at most 128 characters"
        )
    if not is_image_reference(kcfg.image):
        problems.append(
            f"image {kcfg.image!r} is not a valid image reference "
            "([registry[:port]/]name[:tag][@sha256:digest], lowercase name)"
        )
    _check_pipeline_root(problems, p.output_dir)
    if p.sources:
        # The configured sources replace data_root (pipeline/ingest/sources.py); files must be
        # readable in the pod: a bucket or a path in the image.
        for spec in p.sources:
            if spec.path:
                _check_location(problems, f"{spec.kind} source", spec.path, must_exist=True)
    else:
        _check_location(problems, "data root", p.data_root, must_exist=True)
    _check_location(problems, "schema", p.schema_path, must_exist=True)
    _check_location(problems, "serving model dir", p.serving_model_dir, must_exist=False)
    for field in (*_USER_MODULES, "best_hyperparameters_dir"):
        value = getattr(p, field)
        if kcfg.package_user_modules and field in _USER_MODULES:
            if not Path(value).is_file():
                problems.append(
                    f"{field}: {value!r} must be a local file when packaging user modules"
                )
        else:
            _check_location(problems, field, value, must_exist=True)
    if p.train_spans != 1:
        problems.append(
            f"train spans {p.train_spans}: the training window is a custom Resolver over ML "
            "Metadata, and KubeflowV2DagRunner compiles only LatestArtifactStrategy and "
            "LatestBlessedModelStrategy resolvers; train on the newest span (1) here, or run the "
            "window with runners/local_runner.py"
        )
    for name in kcfg.env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.append(f"environment variable name {name!r} is not valid")
    for arg in p.beam_args:
        if not arg.startswith("--"):
            problems.append(f"Beam arg {arg!r} must look like --name=value")
    for name, res in [("default", kcfg.default_resources), *kcfg.resources.items()]:
        for parse, value in ((cpu_cores, res.cpu), (memory_gb, res.memory)):
            try:
                parse(value)
            except ValueError as e:
                problems.append(f"resources for {name}: {e}")
    if problems:
        raise KubeflowConfigError(
            "Kubeflow configuration is not valid:\n  " + "\n  ".join(problems)
        )
