"""No TFX source package for Beam workers that are this machine's own processes.

Every TFX Beam executor given Beam arguments (`BaseBeamExecutor._make_beam_pipeline`), none of
them `--extra_packages`, `--setup_file`, `--requirements_file` or a container image, builds an
"ephemeral package" first: it copies TFX's installed source to a temporary directory and runs
`setup.py sdist` there, so that a Dataflow, Flink or Spark worker can install TFX
(`tfx.utils.dependency_utils.make_beam_dependency_flags`). The DirectRunner's workers, in memory
or in subprocesses, run in this environment and never install it; the build cost 2.6-5.2 s per
Beam component and run here (docs/performance.md). The stock template passes no Beam arguments
and so never builds it.

`install()` makes that step return the arguments unchanged when they run on the DirectRunner;
any other runner (`--beam-arg=--runner=...`) still gets TFX's package, exactly as before. The
local run calls it (pipeline/local/run.py); the Kubeflow runner does not.
"""

from __future__ import annotations

from collections.abc import Callable

from tfx.utils import dependency_utils

# Beam's names for its local runner (Beam looks runners up case-insensitively, the "Runner"
# suffix optional); no --runner at all also means the DirectRunner.
_LOCAL_RUNNERS = frozenset({"direct", "directrunner"})

_tfx_dependency_flags: Callable[[list[str]], list[str]] = (
    dependency_utils.make_beam_dependency_flags
)


def runs_locally(beam_pipeline_args: list[str]) -> bool:
    """True when these Beam arguments run the pipeline on Beam's DirectRunner."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    runner = PipelineOptions(flags=list(beam_pipeline_args)).view_as(StandardOptions).runner
    return runner is None or str(runner).lower() in _LOCAL_RUNNERS


def dependency_flags(beam_pipeline_args: list[str]) -> list[str]:
    """TFX's `make_beam_dependency_flags`, minus the package build for the DirectRunner."""
    if runs_locally(beam_pipeline_args):
        return list(beam_pipeline_args)
    return _tfx_dependency_flags(beam_pipeline_args)


def install() -> None:
    """Route TFX's Beam executors through `dependency_flags` (idempotent)."""
    dependency_utils.make_beam_dependency_flags = dependency_flags
