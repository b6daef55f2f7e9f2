"""Is there anything to run? A re-run with nothing changed answers before TFX is even imported.

Like `make` or `dvc repro`, a completed run records what it ran from (configuration, code and
specs, data files, library versions, the store and the served versions); the next run with the
same record stops at once. What the record covers and why: docs/design.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from modules import dataset_spec
from pipeline.config import PROJECT_ROOT, PipelineConfig, run_source_dirs
from pipeline.ingest.sources import FILE_KINDS

RECORD_NAME = "up_to_date.json"
# How the runner's output says a re-run stopped here (the benchmark looks for it).
UP_TO_DATE = "up to date"
RECORD_VERSION = 1
# The libraries whose versions can change a run's results.
LIBRARIES = (
    "tfx",
    "tensorflow",
    "tf-keras",
    "tensorflow-transform",
    "tensorflow-data-validation",
    "tensorflow-model-analysis",
    "tfx-bsl",
    "apache-beam",
    "ml-metadata",
    "keras-tuner",
)


@dataclasses.dataclass(frozen=True)
class UpToDate:
    """A completed run's record that still holds: when it ran and what it printed."""

    run_id: str
    finished: str
    summary: str
    served: list[str]


def record_path(config: PipelineConfig) -> Path:
    return Path(config.pipeline_root) / RECORD_NAME


def _files(root: Path) -> Iterable[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".pyc"):
                yield Path(dirpath) / name


def _hash_contents(digest: hashlib._Hash, paths: Iterable[Path]) -> None:
    for path in paths:
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")


def _hash_stats(digest: hashlib._Hash, root: Path) -> None:
    for path in _files(root):
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())


def _data_roots(config: PipelineConfig) -> list[Path] | None:
    """The directories holding the run's data files; None when a source is not files."""
    if not config.sources:
        return [Path(config.data_root)]
    if any(source.kind not in FILE_KINDS for source in config.sources):
        return None
    return [Path(source.path) for source in config.sources]


def inputs_fingerprint(config: PipelineConfig) -> str | None:
    """A digest of everything the run is computed from; None when it cannot be known cheaply
    (a database source, the cache off) or a file cannot be read (then TFX decides)."""
    if not config.enable_cache:
        return None
    try:
        return _inputs_fingerprint(config)
    except OSError:
        return None


def _inputs_fingerprint(config: PipelineConfig) -> str | None:
    data_roots = _data_roots(config)
    if data_roots is None:
        return None
    digest = hashlib.sha256()
    settings = dataclasses.asdict(config)
    settings.pop("skip_unchanged")  # whether to check, not what runs
    settings.pop("warm_beam_workers")  # how Beam's workers start, not what they compute
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for root in run_source_dirs(PROJECT_ROOT):
        _hash_contents(digest, _files(root))
    spec = dataset_spec.load(config.dataset)
    extra = [spec.spec_path, config.schema_path, config.best_hyperparameters_dir]
    extra += [
        os.path.dirname(m)
        for m in (config.preprocessing_module, config.trainer_module, config.tuner_module)
    ]
    for path in extra:
        _hash_contents(digest, _files(Path(path)))
    for root in data_roots:
        _hash_stats(digest, root)
    digest.update(sys.version.encode())
    for name in LIBRARIES:
        try:
            digest.update(f"{name}=={importlib.metadata.version(name)}\n".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{name} absent\n".encode())
    return digest.hexdigest()


def _served(config: PipelineConfig) -> list[str]:
    try:
        return sorted(os.listdir(config.model_serving_dir))
    except FileNotFoundError:
        return []


def state_fingerprint(config: PipelineConfig, metadata_sqlite_path: str | None) -> str | None:
    """What a run leaves behind and a later one reads: the metadata file and the served
    versions. None for a store that is not a SQLite file."""
    if not metadata_sqlite_path:
        return None
    try:
        stat = os.stat(metadata_sqlite_path)
    except FileNotFoundError:
        return None
    state = {
        "metadata": [metadata_sqlite_path, stat.st_size, stat.st_mtime_ns],
        "served": _served(config),
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def check(
    config: PipelineConfig, inputs: str | None, metadata_sqlite_path: str | None
) -> UpToDate | None:
    """The last completed run's record when neither the inputs nor the state have changed
    since; None otherwise (or when the record is missing or unreadable)."""
    if inputs is None or not config.skip_unchanged:
        return None
    try:
        record = json.loads(record_path(config).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return None
    state = state_fingerprint(config, metadata_sqlite_path)
    if state is None or record.get("inputs") != inputs or record.get("state") != state:
        return None
    return UpToDate(
        run_id=str(record.get("run_id", "")),
        finished=str(record.get("finished", "")),
        summary=str(record.get("summary", "")),
        served=_served(config),
    )


def save(
    config: PipelineConfig,
    inputs: str | None,
    metadata_sqlite_path: str | None,
    run_id: str,
    summary: str,
) -> bool:
    """Record a completed run (written atomically); False when it cannot be up to date later."""
    forget(config)
    state = state_fingerprint(config, metadata_sqlite_path)
    if inputs is None or state is None:
        return False
    record = {
        "version": RECORD_VERSION,
        "inputs": inputs,
        "state": state,
        "run_id": run_id,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "summary": summary,
    }
    path = record_path(config)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)
    except OSError:  # the run itself completed: a missing record only means TFX decides next
        return False
    return True


def forget(config: PipelineConfig) -> None:
    """Drop the record (a run started: until it completes, nothing is up to date)."""
    record_path(config).unlink(missing_ok=True)


def describe(config: PipelineConfig, up_to_date: UpToDate) -> str:
    """What the runner prints instead of running: why nothing ran, the run it would repeat,
    and why nothing was pushed."""
    served = (
        os.path.join(config.model_serving_dir, up_to_date.served[-1])
        if up_to_date.served
        else "none"
    )
    return (
        f"Pipeline {config.pipeline_name}: {UP_TO_DATE}. Data, code, configuration, ML Metadata "
        f"and served versions are as run {up_to_date.run_id} left them "
        f"({up_to_date.finished}): every component would come from TFX's cache, so nothing "
        "ran. (--always-run runs it through TFX anyway; --no-cache re-executes every "
        f"component.)\n\nThat run's summary:\n{up_to_date.summary.rstrip()}\n\n"
        f"Push: not pushed: nothing changed since run {up_to_date.run_id}; "
        f"the served model is {served}"
    )
