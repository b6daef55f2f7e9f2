"""The one small-pipeline fixture every slow test shares.

The whole pipeline runs once per test session on a few hundred rows, with few training steps
and one tuner trial; end-to-end, serving, lineage and continuous-training tests all read its
outputs instead of running their own.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import pytest

import modules  # noqa: F401 - sets the Keras-2 switch before any test imports TensorFlow
from pipeline.config import PipelineConfig
from pipeline.testing.samples import small_config, write_sample
from tests import server_forks

# Fixtures that run the pipeline: a test using one is slow whether or not its file says so.
PIPELINE_FIXTURES = {"small_pipeline", "pg_pipeline", "runs"}
# Session fixtures: under pytest-xdist (`-n 2 --dist loadgroup`) their tests share one worker.
SESSION_GROUP = "small_pipeline"


# The groups that take longest (each a minute or so of a loaded two-core machine: servers,
# TFMA, TFDV, fresh interpreters), longest first. Under `-n 2 --dist loadgroup` they start
# first so that the two workers end together: in pytest-xdist's own order (most tests first)
# these few-test groups came last and one worker ran the final one or two alone.
# tests/test_xdist_groups.py checks that each is still a test module.
LONGEST_GROUPS = (
    "tests/pipeline/evaluation/test_batch_evaluation.py",
    "tests/data_stats/test_measures.py",
    "tests/serving/test_warmup.py",
    "tests/serving/test_tfx_client.py",
    "tests/serving/test_hardening.py",
    "tests/serving/test_json_count.py",
    "tests/serving/test_lifecycle.py",
    "tests/pipeline/validation/test_row_cleaner_batches.py",
    "tests/serving/test_fuzz.py",
    "tests/serving/test_cli.py",
    "tests/pipeline/ingest/test_csv_arrow.py",
    "tests/pipeline/evaluation/test_histogram_metrics.py",
    "tests/serving/test_gates.py",
    "tests/upkeep/test_gc_plan.py",
    "tests/pipeline/ingest/test_batched_write.py",
    "tests/serving/test_api.py",
    "tests/mlops/test_cli_output.py",
    "tests/registry/test_config.py",
    "tests/modules/test_preprocessing.py",
    "tests/registry/test_server_state.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist's loadgroup starts the groups in the order the workers collected them (the
    order pytest_collection_modifyitems sets), instead of re-sorting them by test count; and a
    value of MLOPS_TEST_FORKED_SERVERS other than 0 or 1 stops the run in one line."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    try:  # MLOPS_TEST_FORKED_SERVERS is 0 or 1, checked before any test starts a server
        server_forks.requested()
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


# First, before pytest-xdist's worker hook turns the xdist_group marks into the node ids that
# `--dist loadgroup` schedules by (tests/test_xdist_groups.py checks that it does).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a pipeline-running fixture `slow` (`make test-fast` skips it).

    For pytest-xdist's loadgroup, every test gets a group: the small pipeline's users one group,
    so the session fixture runs once; the others their module, so a module's server starts once.
    On an xdist worker the groups are then ordered as the workers should start them: the small
    pipeline's, LONGEST_GROUPS, then the rest by test count (pytest-xdist's own order).
    """
    groups = {}
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if PIPELINE_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        group = SESSION_GROUP if "small_pipeline" in fixtures else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
        groups[item] = group
    if hasattr(config, "workerinput"):  # in one process, a module's tests stay together
        first = (SESSION_GROUP, *LONGEST_GROUPS)
        sizes = collections.Counter(groups.values())
        seen = {g: i for i, g in enumerate(dict.fromkeys(groups.values()))}
        rank = {g: first.index(g) if g in first else len(first) for g in sizes}
        items.sort(key=lambda item: (rank[groups[item]], -sizes[groups[item]], seen[groups[item]]))


@pytest.fixture(scope="session", autouse=True)
def _servers_forked():
    """Test servers (serving/testing.py's ServerProcess) fork from one process per test process
    that has imported the server and TensorFlow once (tests/server_forks.py) instead of paying
    that import (~5.5 s) per server. MLOPS_TEST_FORKED_SERVERS=0: a new interpreter each."""
    from serving import testing

    testing.fork_launcher = server_forks.launch
    yield
    testing.fork_launcher = None


@pytest.fixture(scope="session", autouse=True)
def _beam_as_the_local_run_runs_it():
    """TFX Beam executors the tests construct run as the local run runs them: on the DirectRunner
    without TFX's ephemeral `setup.py sdist` first (pipeline/local/beam_packaging.py; a
    subprocess of several seconds per executor that no test reads) and without Beam's repeated
    signature introspection and per-pickle logger flush (pipeline/local/beam_fixed_cost.py), and
    TFDV's histograms as StatisticsGen computes them there (data_stats/equi_width_histogram.py).
    pipeline/local/run.py installs the same; tests/pipeline/local/test_beam_packaging.py,
    test_beam_fixed_cost.py and tests/data_stats/test_equi_width_histogram.py test each against
    TFX's, Beam's and TFDV's own code."""
    import dill
    from apache_beam.transforms import core
    from tensorflow_data_validation.utils import quantiles_util
    from tfx.utils import dependency_utils

    from data_stats import equi_width_histogram
    from pipeline.local import beam_fixed_cost, beam_packaging

    with pytest.MonkeyPatch.context() as mp:
        # TFX's, Beam's and dill's own functions back at the end of the session.
        flags = dependency_utils.make_beam_dependency_flags
        mp.setattr(dependency_utils, "make_beam_dependency_flags", flags)
        mp.setattr(core, "get_function_args_defaults", core.get_function_args_defaults)
        mp.setattr(dill.dill, "_trace", dill.dill._trace)
        histogram = quantiles_util.generate_equi_width_histogram
        mp.setattr(quantiles_util, "generate_equi_width_histogram", histogram)
        beam_packaging.install()
        beam_fixed_cost.install()
        equi_width_histogram.install()
        yield


@dataclasses.dataclass
class SmallPipeline:
    """A finished small run: its config, exit status, MLMD report and output locations."""

    config: PipelineConfig
    exit_code: int
    report: object
    root: Path

    @property
    def metadata_path(self) -> str:
        return self.config.metadata_connection

    @property
    def serving_model_dir(self) -> str:
        return self.config.model_serving_dir

    @property
    def data_root(self) -> str:
        return self.config.data_root


@pytest.fixture(scope="session")
def small_pipeline(tmp_path_factory) -> SmallPipeline:
    from pipeline.local.run import run_pipeline

    root = tmp_path_factory.mktemp("small_pipeline")
    config = small_config(root, write_sample(root / "data"))
    exit_code, report = run_pipeline(config)
    return SmallPipeline(config=config, exit_code=exit_code, report=report, root=root)
