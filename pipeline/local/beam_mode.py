"""Which Beam DirectRunner mode a local run uses: chosen from the input's size, or by flag.

In-memory (one process) wins on small spans: multi-processing pays worker start-up and
serialisation of every bundle, which only a large input earns back with a second core. The
crossover is measured by bench/scale_bench.py (figures in docs/performance.md);
MULTI_PROCESSING_FROM_BYTES is set from it. `auto` picks in-memory below it (or on one core),
multi-processing from it on. Any explicit `--beam-arg` comes after these arguments, so it wins
(Beam's option parser keeps the last value of a repeated flag).
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import (
    MULTI_PROCESSING_FROM_BYTES,
    in_memory_beam_args,
    multi_processing_beam_args,
)

AUTO, IN_MEMORY, MULTI_PROCESSING = "auto", "in-memory", "multi-processing"
BEAM_MODES = (AUTO, IN_MEMORY, MULTI_PROCESSING)


def span_csv_bytes(data_root: str | os.PathLike) -> int | None:
    """Bytes of the CSV files in the latest span-N folder of a local data root (what
    CsvExampleGen reads); None when that is not known (remote root, no span)."""
    from pipeline.ingest.spans import list_spans

    if "://" in str(data_root):
        return None
    spans = list_spans(data_root)
    if not spans:
        return None
    folder = Path(data_root) / f"span-{spans[-1]}"
    return sum(p.stat().st_size for p in folder.glob("*.csv") if p.is_file())


def choose_mode(
    input_bytes: int | None,
    cores: int,
    threshold: int = MULTI_PROCESSING_FROM_BYTES,
) -> str:
    """in-memory or multi-processing for an input of `input_bytes` on `cores` cores."""
    if input_bytes is None or cores < 2 or input_bytes < threshold:
        return IN_MEMORY
    return MULTI_PROCESSING


def resolve_mode(
    mode: str,
    data_root: str | os.PathLike,
    cores: int | None = None,
    threshold: int = MULTI_PROCESSING_FROM_BYTES,
) -> str:
    """The concrete mode for a `--beam-mode` value (auto looks at the data root's latest span)."""
    if mode not in BEAM_MODES:
        raise ValueError(f"unknown Beam mode {mode!r}: expected one of {', '.join(BEAM_MODES)}")
    if mode != AUTO:
        return mode
    return choose_mode(span_csv_bytes(data_root), cores or os.cpu_count() or 1, threshold)


def beam_args(mode: str) -> list[str]:
    """DirectRunner arguments for a concrete mode."""
    if mode == MULTI_PROCESSING:
        return multi_processing_beam_args()
    if mode == IN_MEMORY:
        return in_memory_beam_args()
    raise ValueError(f"not a concrete Beam mode: {mode!r}")


def pipeline_beam_args(
    mode: str, data_root: str | os.PathLike, extra: list[str] | tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The run's Beam arguments: the mode's (auto resolved), then `extra`, which so wins."""
    return tuple(beam_args(resolve_mode(mode, data_root)) + list(extra))
