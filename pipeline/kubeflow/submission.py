"""Upload a compiled spec to a Kubeflow Pipelines API and start a run (kfp.Client)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any

from pipeline.kubeflow.config import KubeflowConfig


class SubmissionError(RuntimeError):
    """The KFP API could not be reached or refused the upload; the message is one line."""


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
    """Upload the spec as a new version of the pipeline (created on first use) and start a run.

    Raises SubmissionError (one line) when the API is unreachable or refuses a request."""
    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    name = kcfg.pipeline.pipeline_name
    try:
        client = client_factory(host=endpoint, namespace=namespace)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        pipeline_id = client.get_pipeline_id(name)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(
                str(spec_path),
                pipeline_name=name,
                description="TFX Chicago taxi pipeline (tfx-taxi-mlops)",
                namespace=namespace,
            ).pipeline_id
        version = client.upload_pipeline_version(
            str(spec_path), pipeline_version_name=f"{name}-{stamp}", pipeline_id=pipeline_id
        )
        experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
        return client.run_pipeline(
            experiment_id=experiment_id,
            job_name=run_name or f"{name}-{stamp}",
            params={**kcfg.runtime_parameter_defaults(), **(params or {})},
            pipeline_id=pipeline_id,
            version_id=version.pipeline_version_id,
            pipeline_root=f"{kcfg.pipeline_root.rstrip('/')}/{name}",
            enable_caching=kcfg.pipeline.enable_cache,
            service_account=service_account,
        )
    except Exception as e:  # kfp raises urllib3/ApiException/ConnectionError/ValueError...
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise SubmissionError(
            f"cannot submit to the Kubeflow Pipelines API at {endpoint}: "
            f"{type(e).__name__}{': ' + text[:300] if text else ''}"
        ) from None
