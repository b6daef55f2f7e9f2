"""The Kubeflow runner's own flags (image, cluster, submission) and the KubeflowConfig they and
the shared pipeline flags (pipeline/flags.py) describe."""

from __future__ import annotations

import argparse
import dataclasses
import os

from pipeline.config import MODULES_DIR
from pipeline.flags import add_pipeline_flags, apply_pipeline_flags
from pipeline.kubeflow.config import (
    DEFAULT_IMAGE,
    DEFAULT_SPEC_PATH,
    IMAGE_PROJECT_ROOT,
    RUNTIME_PARAMETERS,
    KubeflowConfig,
    default_pipeline_config,
)
from pipeline.kubeflow.resources import Resources

USER_MODULES = ("preprocessing", "trainer", "tuner")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return key, value


def parser(description: str | None = None) -> argparse.ArgumentParser:
    """The shared pipeline flags plus the cluster's."""
    d = KubeflowConfig()
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    add_pipeline_flags(p)
    add = p.add_argument
    add("--image", default=DEFAULT_IMAGE, help="pipeline image (make image IMAGE=...)")
    add("--module-dir", help=f"where modules/*.py are (default {IMAGE_PROJECT_ROOT}/modules)")
    add("--package-user-modules", action="store_true", help="wheel-package local modules/")
    add("--resources", action="append", default=[], type=_key_value, metavar="NODE=CPU,MEM")
    add("--default-resources", default=f"{d.default_resources.cpu},{d.default_resources.memory}")
    add("--env", action="append", default=[], type=_key_value, metavar="NAME=VALUE")
    add("--output", default=DEFAULT_SPEC_PATH, help=".yaml (KFP) or .json (PipelineJob)")
    add("--submit", action="store_true", help="upload the spec and start a run")
    add("--endpoint", help="KFP API, e.g. http://localhost:8080 (port-forwarded ml-pipeline-ui)")
    add("--namespace", help="multi-user KFP: the profile namespace")
    add("--experiment", default="taxi")
    add("--run-name")
    add("--service-account")
    add(
        "--param",
        action="append",
        default=[],
        type=_key_value,
        metavar="NAME=VALUE",
        help=f"runtime parameter for the submitted run ({', '.join(RUNTIME_PARAMETERS)})",
    )
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Combinations argparse cannot express: p.error (exit 2, one line) on a bad one."""
    if args.submit and not args.endpoint:
        p.error("--submit needs --endpoint URL")
    unknown = {k for k, _ in args.param} - set(RUNTIME_PARAMETERS)
    if unknown:
        p.error(f"unknown runtime parameter(s) {sorted(unknown)}; have {list(RUNTIME_PARAMETERS)}")


def kubeflow_config(args: argparse.Namespace) -> KubeflowConfig:
    """The KubeflowConfig the flags describe, on the dataset's cluster defaults."""
    pipeline = apply_pipeline_flags(args, default_pipeline_config(args.dataset))
    if args.module_dir or args.package_user_modules:
        module_dir = args.module_dir or str(MODULES_DIR)
        pipeline = dataclasses.replace(
            pipeline,
            **{f"{n}_module": os.path.join(module_dir, f"{n}.py") for n in USER_MODULES},
        )
    resources = dict(KubeflowConfig().resources)
    resources.update({k: Resources.parse(v) for k, v in args.resources})
    return KubeflowConfig(
        pipeline=pipeline,
        image=args.image,
        default_resources=Resources.parse(args.default_resources),
        resources=resources,
        env=dict(args.env),
        package_user_modules=args.package_user_modules,
    )
