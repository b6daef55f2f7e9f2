"""The Beam mode a local run uses: auto from the input size, flags, and --beam-arg winning."""

from __future__ import annotations

import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from pipeline.config import MULTI_PROCESSING_FROM_BYTES
from pipeline.local import beam_mode
from tests.paths import PROJECT_ROOT


def _direct(beam_args) -> DirectOptions:
    return PipelineOptions(list(beam_args)).view_as(DirectOptions)


def _write_span(root, span: int, size: int) -> None:
    folder = root / f"span-{span}"
    folder.mkdir(parents=True)
    (folder / "data.csv").write_bytes(b"x" * size)


@pytest.mark.parametrize(
    "size, cores, expected",
    [
        (0, 2, beam_mode.IN_MEMORY),
        (MULTI_PROCESSING_FROM_BYTES - 1, 2, beam_mode.IN_MEMORY),
        (MULTI_PROCESSING_FROM_BYTES, 2, beam_mode.MULTI_PROCESSING),
        (MULTI_PROCESSING_FROM_BYTES * 100, 8, beam_mode.MULTI_PROCESSING),
        (MULTI_PROCESSING_FROM_BYTES * 100, 1, beam_mode.IN_MEMORY),  # one core: nothing to gain
        (None, 8, beam_mode.IN_MEMORY),  # size unknown (remote data root)
    ],
)
def test_choose_mode_at_the_crossover(size, cores, expected):
    assert beam_mode.choose_mode(size, cores) == expected


def test_auto_measures_only_the_latest_span(tmp_path):
    limit = 1000
    _write_span(tmp_path, 1, limit)
    _write_span(tmp_path, 2, 10)
    (tmp_path / "span-2" / "notes.txt").write_bytes(b"x" * limit)
    assert beam_mode.span_csv_bytes(tmp_path) == 10
    assert beam_mode.resolve_mode("auto", tmp_path, 4, limit) == beam_mode.IN_MEMORY
    _write_span(tmp_path, 3, limit)
    assert beam_mode.resolve_mode("auto", tmp_path, 4, limit) == beam_mode.MULTI_PROCESSING
    assert beam_mode.resolve_mode("auto", tmp_path, 1, limit) == beam_mode.IN_MEMORY
    # Explicit modes ignore the size.
    assert beam_mode.resolve_mode("in-memory", tmp_path, 4, limit) == beam_mode.IN_MEMORY


def test_unknown_sizes_and_modes(tmp_path):
    assert beam_mode.span_csv_bytes(tmp_path / "missing") is None
    assert beam_mode.span_csv_bytes("gs://bucket/taxi") is None
    assert beam_mode.span_csv_bytes(tmp_path) is None  # no span folder
    with pytest.raises(ValueError, match="unknown Beam mode"):
        beam_mode.resolve_mode("fast", tmp_path)
    with pytest.raises(ValueError):
        beam_mode.beam_args(beam_mode.AUTO)


def test_modes_give_their_direct_runner_options(tmp_path):
    _write_span(tmp_path, 1, 100)
    auto = _direct(beam_mode.pipeline_beam_args("auto", tmp_path))
    assert auto.direct_running_mode == "in_memory"
    assert auto.direct_num_workers == 1
    chosen = _direct(beam_mode.pipeline_beam_args("multi-processing", tmp_path))
    assert chosen.direct_running_mode == "multi_processing"
    assert chosen.direct_num_workers == 0  # one per core
    forced = _direct(beam_mode.pipeline_beam_args("in-memory", tmp_path))
    assert forced.direct_running_mode == "in_memory"


def test_explicit_beam_args_win_over_the_mode(tmp_path):
    _write_span(tmp_path, 1, 100)
    extra = ["--direct_running_mode=multi_processing", "--direct_num_workers=3"]
    options = _direct(beam_mode.pipeline_beam_args("in-memory", tmp_path, extra))
    assert options.direct_running_mode == "multi_processing"
    assert options.direct_num_workers == 3


def test_runner_rejects_an_unknown_mode_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "runners" / "local_runner.py"), "--beam-mode", "x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "invalid choice: 'x'" in proc.stderr
    assert "Traceback" not in proc.stderr
