"""Read access to a TFX pipeline's ML Metadata store, in TFX's own vocabulary.

MLMD speaks in type ids, events and contexts; users speak in components, runs and artifacts.
This layer does the translation once (cached per store) so the queries stay readable. It only
uses MLMD's query API (contexts, executions, events, lineage subgraph), never SQL, so it works
the same on SQLite, MySQL and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2

from lineage.connection import (
    ConnectionConfigError,
    connection_config_from_url,
    describe_connection,
    scrub,
)

PIPELINE_CONTEXT = "pipeline"
RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"

_STATE_NAMES = {
    mlmd_pb2.Execution.COMPLETE: "complete",
    mlmd_pb2.Execution.CACHED: "cached",
    mlmd_pb2.Execution.FAILED: "failed",
    mlmd_pb2.Execution.RUNNING: "running",
    mlmd_pb2.Execution.NEW: "new",
    mlmd_pb2.Execution.CANCELED: "canceled",
    mlmd_pb2.Execution.UNKNOWN: "unknown",
}


class LineageError(Exception):
    """A user-facing failure (bad target, unreachable store); the CLI prints it without a traceback."""


def open_store(
    url_or_config: str | os.PathLike[str] | mlmd_pb2.ConnectionConfig,
) -> metadata_store.MetadataStore:
    """Connect read-only where the backend allows it, failing clearly instead of creating a store.

    MLMD happily creates an empty SQLite file for a mistyped path, after which every command would
    report "no runs"; checking first turns that into a clear "no such file".
    """
    if isinstance(url_or_config, mlmd_pb2.ConnectionConfig):
        config = mlmd_pb2.ConnectionConfig()
        config.CopyFrom(url_or_config)
    else:
        try:
            config = connection_config_from_url(url_or_config)
        except ConnectionConfigError as exc:
            raise LineageError(str(exc)) from None
    where = describe_connection(config)
    if config.WhichOneof("config") == "sqlite":
        path = config.sqlite.filename_uri
        if not os.path.isfile(path):
            raise LineageError(f"metadata store not found: {path} (run the pipeline first, or pass --metadata)")
        config.sqlite.connection_mode = mlmd_pb2.SqliteMetadataSourceConfig.READONLY
    try:
        store = metadata_store.MetadataStore(config)
        # A corrupt or foreign file can connect fine and only fail on the first query.
        store.get_context_types()
    except Exception as exc:  # MLMD raises a family of errors.* plus RuntimeError from C++.
        message = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, config)
        raise LineageError(f"cannot read metadata store {where}: {message}") from None
    return store


def value_of(value: mlmd_pb2.Value) -> Any:
    """A property value as plain Python; TFX stores JSON-ish values in structs under __value__."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "struct_value":
        data = json_format.MessageToDict(value.struct_value)
        if set(data) == {"__value__"} and isinstance(data["__value__"], str):
            try:
                return json.loads(data["__value__"])
            except ValueError:
                return data["__value__"]
        return data
    if kind == "proto_value":
        return str(value.proto_value.type_url)
    raw = getattr(value, kind)
    if kind == "string_value":
        # Exec properties such as train_args are JSON text; decode so diffs compare values.
        stripped = raw.strip()
        if stripped[:1] in "{[":
            try:
                return json.loads(stripped)
            except ValueError:
                pass
    return raw


def properties_of(node: mlmd_pb2.Artifact | mlmd_pb2.Execution) -> dict[str, Any]:
    """Properties and custom properties merged; TFX splits them arbitrarily across versions."""
    out: dict[str, Any] = {}
    for source in (node.properties, node.custom_properties):
        for key, value in source.items():
            if key.startswith("__") or key in {"tfx_version", "is_external"}:
                continue
            out[key] = value_of(value)
    return out


def iso_time(millis: int) -> str:
    """MLMD timestamps are epoch milliseconds; print them as local ISO time to the second."""
    if not millis:
        return ""
    return dt.datetime.fromtimestamp(millis / 1000).isoformat(sep=" ", timespec="seconds")


def state_name(execution: mlmd_pb2.Execution) -> str:
    return _STATE_NAMES.get(execution.last_known_state, "unknown")


class LineageStore:
    """Cached, TFX-aware view over one MetadataStore."""

    def __init__(self, store: metadata_store.MetadataStore):
        self.store = store

    # ---- types -------------------------------------------------------------------------------
    @functools.cached_property
    def artifact_types(self) -> dict[int, str]:
        return {t.id: t.name for t in self.store.get_artifact_types()}

    @functools.cached_property
    def execution_types(self) -> dict[int, str]:
        return {t.id: t.name for t in self.store.get_execution_types()}

    def artifact_type(self, artifact: mlmd_pb2.Artifact) -> str:
        return self.artifact_types.get(artifact.type_id, f"type#{artifact.type_id}")

    def execution_type(self, execution: mlmd_pb2.Execution) -> str:
        return self.execution_types.get(execution.type_id, f"type#{execution.type_id}")

    # ---- contexts ----------------------------------------------------------------------------
    def contexts(self, type_name: str) -> list[mlmd_pb2.Context]:
        try:
            return list(self.store.get_contexts_by_type(type_name))
        except Exception:  # an MLMD store with no such context type (e.g. not written by TFX)
            return []

    @functools.cached_property
    def node_contexts(self) -> list[mlmd_pb2.Context]:
        return self.contexts(NODE_CONTEXT)

    @functools.cached_property
    def node_of_execution(self) -> dict[int, str]:
        """Execution id -> component id (TFX's node id, e.g. 'Trainer')."""
        mapping: dict[int, str] = {}
        for ctx in self.node_contexts:
            node_id = ctx.name.split(".", 1)[1] if "." in ctx.name else ctx.name
            for execution in self.store.get_executions_by_context(ctx.id):
                mapping[execution.id] = node_id
        return mapping

    @functools.cached_property
    def runs(self) -> list[mlmd_pb2.Context]:
        """pipeline_run contexts, newest first."""
        return sorted(
            self.contexts(RUN_CONTEXT), key=lambda c: (c.create_time_since_epoch, c.id), reverse=True
        )

    def run_executions(self, run: mlmd_pb2.Context) -> list[mlmd_pb2.Execution]:
        return sorted(self.store.get_executions_by_context(run.id), key=lambda e: e.id)

    @functools.cached_property
    def run_of_execution(self) -> dict[int, str]:
        mapping: dict[int, str] = {}
        for run in self.runs:
            for execution in self.store.get_executions_by_context(run.id):
                mapping.setdefault(execution.id, run.name)
        return mapping

    def pipeline_of_run(self, run: mlmd_pb2.Context) -> str:
        parents = self.store.get_parent_contexts_by_context(run.id)
        for parent in parents:
            if parent.type == PIPELINE_CONTEXT:
                return parent.name
        # Older TFX versions don't link run -> pipeline; node contexts carry "pipeline.node".
        for execution in self.store.get_executions_by_context(run.id)[:1]:
            for ctx in self.store.get_contexts_by_execution(execution.id):
                if ctx.type == PIPELINE_CONTEXT:
                    return ctx.name
        return ""

    def resolve_run(self, ref: str) -> mlmd_pb2.Context:
        """A run by exact id, unique prefix, 'latest', 'previous' or 'latest~N' (N runs back)."""
        runs = self.runs
        if not runs:
            raise LineageError("no pipeline runs recorded in this metadata store")
        back = None
        if ref == "latest":
            back = 0
        elif ref == "previous":
            back = 1
        elif ref.startswith("latest~") and ref[len("latest~"):].isdigit():
            back = int(ref[len("latest~"):])
        if back is not None:
            if back >= len(runs):
                raise LineageError(f"run {ref!r} does not exist: only {len(runs)} run(s) recorded")
            return runs[back]
        exact = [r for r in runs if r.name == ref]
        if exact:
            return exact[0]
        matches = [r for r in runs if r.name.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise LineageError(
                f"run {ref!r} is ambiguous: matches {', '.join(r.name for r in matches[:5])}"
            )
        raise LineageError(
            f"unknown run {ref!r}; list runs with `mlops lineage runs` (or use latest / previous)"
        )

    # ---- artifacts, executions, events --------------------------------------------------------
    def artifacts_by_id(self, ids: Iterable[int]) -> dict[int, mlmd_pb2.Artifact]:
        ids = sorted(set(ids))
        return {a.id: a for a in self.store.get_artifacts_by_id(ids)} if ids else {}

    def executions_by_id(self, ids: Iterable[int]) -> dict[int, mlmd_pb2.Execution]:
        ids = sorted(set(ids))
        return {e.id: e for e in self.store.get_executions_by_id(ids)} if ids else {}

    def events_of_executions(self, ids: Sequence[int]) -> list[mlmd_pb2.Event]:
        return list(self.store.get_events_by_execution_ids(list(ids))) if ids else []

    def events_of_artifacts(self, ids: Sequence[int]) -> list[mlmd_pb2.Event]:
        return list(self.store.get_events_by_artifact_ids(list(ids))) if ids else []

    def artifacts_of_type(self, type_name: str) -> list[mlmd_pb2.Artifact]:
        if type_name not in self.artifact_types.values():
            known = ", ".join(sorted(self.artifact_types.values())) or "none"
            raise LineageError(f"unknown artifact type {type_name!r}; types in this store: {known}")
        return list(self.store.get_artifacts_by_type(type_name))

    def producers(self, artifact_ids: Sequence[int]) -> dict[int, list[int]]:
        """Artifact id -> executions that output it, oldest first (later ones are cache hits)."""
        out: dict[int, list[int]] = {}
        for event in self.events_of_artifacts(artifact_ids):
            if is_output(event):
                out.setdefault(event.artifact_id, []).append(event.execution_id)
        for ids in out.values():
            ids.sort()
        return out

    def lineage_subgraph(
        self, artifact_ids: Sequence[int], direction: int, max_hops: int
    ) -> mlmd_pb2.LineageGraph:
        options = mlmd_pb2.LineageSubgraphQueryOptions(max_num_hops=max_hops, direction=direction)
        options.starting_artifacts.filter_query = "id IN ({})".format(
            ", ".join(str(i) for i in artifact_ids)
        )
        return self.store.get_lineage_subgraph(options)

    def component_name(self, execution: mlmd_pb2.Execution) -> str:
        node = self.node_of_execution.get(execution.id)
        if node:
            return node
        return self.execution_type(execution).rsplit(".", 1)[-1]


def is_output(event: mlmd_pb2.Event) -> bool:
    return event.type in (
        mlmd_pb2.Event.OUTPUT,
        mlmd_pb2.Event.DECLARED_OUTPUT,
        mlmd_pb2.Event.INTERNAL_OUTPUT,
        mlmd_pb2.Event.PENDING_OUTPUT,
    )


def is_input(event: mlmd_pb2.Event) -> bool:
    return event.type in (
        mlmd_pb2.Event.INPUT,
        mlmd_pb2.Event.DECLARED_INPUT,
        mlmd_pb2.Event.INTERNAL_INPUT,
    )


def event_key(event: mlmd_pb2.Event) -> str:
    """The component's input/output name (e.g. 'baseline_model') recorded in the event path."""
    for step in event.path.steps:
        if step.WhichOneof("value") == "key":
            return step.key
    return ""
