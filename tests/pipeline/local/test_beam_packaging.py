"""TFX's Beam executors skip the TFX source package on the DirectRunner, and only there
(pipeline/local/beam_packaging.py)."""

from __future__ import annotations

import os

import pytest
from apache_beam.options.pipeline_options import SetupOptions
from tfx.dsl.components.base import base_beam_executor
from tfx.utils import dependency_utils

from pipeline.local import beam_packaging
from pipeline.local.beam_mode import IN_MEMORY, MULTI_PROCESSING, beam_args
from pipeline.validation import row_cleaner


@pytest.fixture
def installed(monkeypatch):
    """install(), undone after the test (the patch is process-wide)."""
    monkeypatch.setattr(
        dependency_utils, "make_beam_dependency_flags", dependency_utils.make_beam_dependency_flags
    )
    beam_packaging.install()
    beam_packaging.install()  # idempotent
    assert dependency_utils.make_beam_dependency_flags is beam_packaging.dependency_flags


@pytest.mark.parametrize(
    "args",
    [
        [],
        beam_args(IN_MEMORY),
        beam_args(MULTI_PROCESSING),
        ["--runner=DirectRunner"],
        ["--runner=direct"],
        ["--runner", "DIRECTRUNNER", "--direct_num_workers=2"],
    ],
)
def test_the_direct_runner_runs_locally(args):
    assert beam_packaging.runs_locally(args)


@pytest.mark.parametrize(
    "args",
    [
        ["--runner=DataflowRunner", "--project=p", "--region=r"],
        ["--runner=FlinkRunner", "--flink_master=localhost:8081"],
        ["--runner=SparkRunner"],
        ["--runner=PortableRunner", "--job_endpoint=localhost:8099"],
        ["--runner=Direct Runner"],  # not a runner Beam knows: not taken for the local one
        ["--runner=DirectRunner;DataflowRunner"],
    ],
)
def test_other_runners_do_not(args):
    assert not beam_packaging.runs_locally(args)


def _options_of_a_beam_executor(args: list[str]):
    # The pipeline's own Beam executor (a TFX BaseBeamExecutor, as every data stage's is).
    executor = row_cleaner.Executor(
        base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=list(args))
    )
    with executor._make_beam_pipeline() as pipeline:  # noqa: SLF001 - what every executor calls
        return pipeline.options.view_as(SetupOptions)


def test_a_local_beam_executor_gets_no_tfx_package(installed):
    options = _options_of_a_beam_executor(beam_args(MULTI_PROCESSING))
    assert not options.extra_packages


def test_a_remote_runner_still_gets_tfx_package(installed, tmp_path, monkeypatch):
    # TFX's own build, for real: it copies the installed TFX and runs `setup.py sdist`.
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    flags = beam_packaging.dependency_flags(["--runner=DataflowRunner", "--project=p"])
    (package,) = [f.split("=", 1)[1] for f in flags if f.startswith("--extra_package=")]
    assert os.path.isfile(package) and package.endswith(".tar.gz")
    assert flags[:2] == ["--runner=DataflowRunner", "--project=p"]
