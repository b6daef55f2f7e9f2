"""A fix for TFX 1.16's cache lookup on ML Metadata stores that return artifacts out of order.

`tfx.orchestration.portable.cache_utils._get_outputs_of_execution` reads a cached execution's
OUTPUT events, fetches their artifacts with `get_artifacts_by_id` and their types with
`get_artifact_types_by_id`, and zips the three lists as if each came back in the order asked.
MLMD promises no order: SQLite happens to return ids ascending, PostgreSQL returns rows in heap
order. On PostgreSQL a cached node with two outputs (the RowCleaner's `cleaned_examples` and
`quarantine`, or Transform without its statistics) can then publish each artifact under the
other's key; the next node finds no artifact of its input's type (InsufficientInputError), and
MLMD's PostgreSQL backend then fails to store that error's text (`syntax error at or near "{"`).
A type list with repeats is worse still: `get_artifact_types_by_id` returns each type once.

`install()` swaps in the same lookup keyed by id. The orchestrator process calls it before a
local run (pipeline/local/run.py); Kubeflow's caching is the backend's and does not go through it.
"""

from __future__ import annotations

import collections

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.orchestration import metadata
from tfx.orchestration.portable import cache_utils
from tfx.types import artifact_utils


def outputs_of_execution(
    metadata_handle: metadata.Metadata, execution_id: int
) -> dict[str, list[types.Artifact]] | None:
    """Output key -> artifacts of one past execution, or None when one of them is not LIVE
    (a partial result); what TFX's function means to return."""
    store = metadata_handle.store
    events = [
        e
        for e in store.get_events_by_execution_ids([execution_id])
        if e.type == metadata_store_pb2.Event.OUTPUT
    ]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    if any(a.state != metadata_store_pb2.Artifact.LIVE for a in artifacts.values()):
        return None
    type_ids = sorted({a.type_id for a in artifacts.values()})
    artifact_types = {t.id: t for t in store.get_artifact_types_by_id(type_ids)}
    result: dict[str, list[types.Artifact]] = collections.defaultdict(list)
    for event in events:
        artifact = artifacts.get(event.artifact_id)
        if artifact is None:  # deleted since: not a usable cache entry
            return None
        result[event.path.steps[0].key].append(
            artifact_utils.deserialize_artifact(artifact_types[artifact.type_id], artifact)
        )
    return result


def install() -> None:
    """Make TFX's cache lookup use `outputs_of_execution` (idempotent)."""
    cache_utils._get_outputs_of_execution = outputs_of_execution  # noqa: SLF001 - the fix
