"""Do the metadata store and the artifact files agree? (`mlops store check`)

Two ways they drift apart: files deleted by hand (or a lost disk) leave LIVE artifacts whose URI
is gone, which TFX's cache would hand a later run as if they were there; and a crashed or
interrupted run leaves output directories no artifact names, which nothing will ever clean up.
`check` lists both; `repair` marks the missing ones DELETED (audited like a gc, so the next run
re-executes whatever needs them) and leaves the unnamed files for a person to look at.
"""

from __future__ import annotations

import dataclasses
import os

from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2

from metadata.store import MetadataStore
from upkeep.gc import Item, Result, delete_payloads, require_pipeline, size_of, under

# TFX writes each output at <pipeline root>/<node id>/<output key>/<execution id>/; hidden
# directories beside them (.system/, the gc trash) are TFX's or ours, not artifacts.
OUTPUT_DEPTH = 3


@dataclasses.dataclass
class Report:
    """LIVE artifacts whose files are missing, and output dirs that no LIVE artifact names."""

    missing: list[Item]
    unnamed: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unnamed

    def to_json(self) -> dict:
        return {
            "missing": [dataclasses.asdict(i) for i in self.missing],
            "unnamed": self.unnamed,
        }


def output_dirs(pipeline_root: str) -> list[str]:
    """Every <node>/<key>/<execution id> directory under the pipeline root."""
    found = []
    root = os.path.abspath(pipeline_root)
    for directory, subdirs, _ in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        depth = len(os.path.relpath(directory, root).split(os.sep)) if directory != root else 0
        if depth == OUTPUT_DEPTH - 1:
            found += [os.path.join(directory, d) for d in subdirs if d.isascii() and d.isdigit()]
            subdirs[:] = []
    return found


def check(store: MetadataStore, *, pipeline_name: str, pipeline_root: str) -> Report:
    """Compare the pipeline's LIVE artifacts with the files under its root (reads only)."""
    require_pipeline(store, pipeline_name)
    live = [
        a
        for a in store.pipeline_artifacts(pipeline_name)
        if a.state == mlmd_pb2.Artifact.LIVE and a.uri
    ]
    missing = [
        Item(a.id, store.artifact_type(a), a.uri, 0, "files missing")
        for a in live
        if under(a.uri, pipeline_root) and not os.path.lexists(a.uri)
    ]
    named = {os.path.abspath(a.uri) for a in live}
    unnamed = [d for d in output_dirs(pipeline_root) if d not in named]
    return Report(missing, unnamed)


def repair(store: MetadataStore, report: Report, *, pipeline_root: str, who: str) -> Result:
    """Mark the artifacts whose files are missing DELETED, with an audit record."""
    return delete_payloads(
        store,
        report.missing,
        pipeline_root=pipeline_root,
        action="store-check-repair",
        who=who,
        details={"reason": "files missing on disk"},
    )


def unnamed_bytes(report: Report) -> int:
    return sum(size_of(d) for d in report.unnamed)
