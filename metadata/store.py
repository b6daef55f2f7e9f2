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

from cli_support import CommandError, Exit
from metadata.connection import (
    ConnectionConfigError,
    connection_config_from_url,
    describe_connection,
    scrub,
)

# Node ids, re-exported: callers of the queries name nodes through this module or node_ids.
from metadata.node_ids import (
    DATA_GATE as DATA_GATE,
)
from metadata.node_ids import (
    DRIFT_VALIDATOR as DRIFT_VALIDATOR,
)
from metadata.node_ids import (
    EVALUATOR as EVALUATOR,
)
from metadata.node_ids import (
    EXAMPLE_GEN as EXAMPLE_GEN,
)
from metadata.node_ids import (
    EXAMPLE_VALIDATOR as EXAMPLE_VALIDATOR,
)
from metadata.node_ids import (
    PUSHER as PUSHER,
)
from metadata.node_ids import (
    ROW_CLEANER as ROW_CLEANER,
)
from metadata.node_ids import (
    STATISTICS_GEN as STATISTICS_GEN,
)
from metadata.node_ids import (
    TRANSFORM as TRANSFORM,
)
from metadata.node_ids import (
    is_example_gen,
)
from metadata.records import (
    ActionRecord,
    ExecutionRecord,
    PushedModelRecord,
    RunRecord,
    SpanRecord,
    run_status,
)
from metadata.run_process import RunProcess, checked_status, processes

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


PREVIOUS_SPAN_PROPERTY = "previous_span"
# The RowCleaner's output of clean rows.
CLEANED_EXAMPLES = "cleaned_examples"


class MetadataError(CommandError):
    """A user-facing failure; CLIs print it as one line (cli_support). Most are a store, run,
    artifact or target that does not exist (INPUT_MISSING); an unreadable store or a bad URL
    says FAILED."""

    def __init__(self, message: str, status: Exit = Exit.INPUT_MISSING) -> None:
        super().__init__(message, status)


def open_store(
    url_or_config: str | os.PathLike[str] | mlmd_pb2.ConnectionConfig,
    *,
    writable: bool = False,
) -> MetadataStore:
    """Open a store for reading: a SQLite path, a database URL, a .pbtxt or a ConnectionConfig.

    Connects read-only where the backend allows it, failing clearly instead of creating a store.
    `writable=True` is for store upkeep (`mark_deleted`, `record_action`): the store must exist
    all the same.

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
            raise MetadataError(str(exc), Exit.FAILED) from None
    where = describe_connection(config)
    if config.WhichOneof("config") == "sqlite":
        path = config.sqlite.filename_uri
        if not os.path.isfile(path):
            raise MetadataError(
                f"metadata store not found: {path} (run the pipeline first, or pass --metadata)"
            )
        if not writable:
            config.sqlite.connection_mode = mlmd_pb2.SqliteMetadataSourceConfig.READONLY
    try:
        store = metadata_store.MetadataStore(config)
        # A corrupt or foreign file can connect fine and only fail on the first query.
        store.get_context_types()
    except Exception as exc:  # MLMD raises a family of errors.* plus RuntimeError from C++.
        message = scrub(
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, config
        )
        raise MetadataError(f"cannot read metadata store {where}: {message}", Exit.FAILED) from None
    return MetadataStore(store, where)


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
    """'complete', 'cached', 'failed', 'running', 'new', 'canceled' or 'unknown'."""
    return _STATE_NAMES.get(execution.last_known_state, "unknown")


class MetadataStore:
    """Cached, TFX-aware read view over one ML Metadata store (open it with `open_store`).

    Low-level accessors (types, contexts, events, lineage subgraph) return MLMD protos; the
    typed queries at the end (runs, executions, spans, pushed models, ...) return the records of
    metadata/records.py. Answers are cached per instance: call `refresh` to see later runs.
    """

    def __init__(self, store: metadata_store.MetadataStore, where: str = ""):
        self.mlmd = store
        self.where = where

    def refresh(self) -> None:
        """Forget cached answers, so the next query sees what was recorded since."""
        for name in (
            "artifact_types",
            "execution_types",
            "node_contexts",
            "node_of_execution",
            "run_contexts",
            "run_of_execution",
            "run_processes",
        ):
            self.__dict__.pop(name, None)

    # ---- types -------------------------------------------------------------------------------
    @functools.cached_property
    def artifact_types(self) -> dict[int, str]:
        """Artifact type id -> name (Examples, Model, PushedModel, ...)."""
        return {t.id: t.name for t in self.mlmd.get_artifact_types()}

    @functools.cached_property
    def execution_types(self) -> dict[int, str]:
        """Execution type id -> name (the component's executor class path)."""
        return {t.id: t.name for t in self.mlmd.get_execution_types()}

    def artifact_type(self, artifact: mlmd_pb2.Artifact) -> str:
        """The artifact's type name."""
        return self.artifact_types.get(artifact.type_id, f"type#{artifact.type_id}")

    def execution_type(self, execution: mlmd_pb2.Execution) -> str:
        """The execution's type name."""
        return self.execution_types.get(execution.type_id, f"type#{execution.type_id}")

    # ---- contexts ----------------------------------------------------------------------------
    def contexts(self, type_name: str) -> list[mlmd_pb2.Context]:
        """Contexts of one type ('pipeline', 'pipeline_run', 'node'); [] if the type is unknown."""
        try:
            return list(self.mlmd.get_contexts_by_type(type_name))
        except Exception:  # an MLMD store with no such context type (e.g. not written by TFX)
            return []

    @functools.cached_property
    def node_contexts(self) -> list[mlmd_pb2.Context]:
        """One 'node' context per pipeline component ('<pipeline>.<node id>')."""
        return self.contexts(NODE_CONTEXT)

    @functools.cached_property
    def node_of_execution(self) -> dict[int, str]:
        """Execution id -> component id (TFX's node id, e.g. 'Trainer')."""
        mapping: dict[int, str] = {}
        for ctx in self.node_contexts:
            node_id = ctx.name.split(".", 1)[1] if "." in ctx.name else ctx.name
            for execution in self.mlmd.get_executions_by_context(ctx.id):
                mapping[execution.id] = node_id
        return mapping

    @functools.cached_property
    def run_contexts(self) -> list[mlmd_pb2.Context]:
        """pipeline_run contexts, newest first."""
        return sorted(
            self.contexts(RUN_CONTEXT),
            key=lambda c: (c.create_time_since_epoch, c.id),
            reverse=True,
        )

    def run_executions(self, run: mlmd_pb2.Context) -> list[mlmd_pb2.Execution]:
        """A run's executions in the order they were recorded."""
        return sorted(self.mlmd.get_executions_by_context(run.id), key=lambda e: e.id)

    @functools.cached_property
    def run_of_execution(self) -> dict[int, str]:
        """Execution id -> run id (the pipeline_run context's name)."""
        mapping: dict[int, str] = {}
        for run in self.run_contexts:
            for execution in self.mlmd.get_executions_by_context(run.id):
                mapping.setdefault(execution.id, run.name)
        return mapping

    def run_of(self, execution_id: int) -> str:
        """The run id an execution belongs to ('' when it is in no pipeline_run context)."""
        return self.run_of_execution.get(execution_id, "")

    def pipeline_of_run(self, run: mlmd_pb2.Context) -> str:
        """The pipeline name a run belongs to ('' if MLMD does not say)."""
        parents = self.mlmd.get_parent_contexts_by_context(run.id)
        for parent in parents:
            if parent.type == PIPELINE_CONTEXT:
                return parent.name
        # Older TFX versions don't link run -> pipeline; node contexts carry "pipeline.node".
        for execution in self.mlmd.get_executions_by_context(run.id)[:1]:
            for ctx in self.mlmd.get_contexts_by_execution(execution.id):
                if ctx.type == PIPELINE_CONTEXT:
                    return ctx.name
        return ""

    def resolve_run(self, ref: str, pipeline_name: str | None = None) -> mlmd_pb2.Context:
        """A run by exact id, unique prefix, 'latest', 'previous' or 'latest~N' (N runs back),
        among the runs of `pipeline_name` when given (one store holds every dataset's runs)."""
        runs = self.run_contexts
        if pipeline_name is not None:
            runs = [r for r in runs if self.pipeline_of_run(r) == pipeline_name]
            if not runs:
                raise MetadataError(
                    f"no runs of pipeline {pipeline_name!r} recorded in this metadata store"
                )
        if not runs:
            raise MetadataError("no pipeline runs recorded in this metadata store")
        back = None
        if ref == "latest":
            back = 0
        elif ref == "previous":
            back = 1
        elif ref.startswith("latest~") and ref[len("latest~") :].isdigit():
            back = int(ref[len("latest~") :])
        if back is not None:
            if back >= len(runs):
                raise MetadataError(f"run {ref!r} does not exist: only {len(runs)} run(s) recorded")
            return runs[back]
        exact = [r for r in runs if r.name == ref]
        if exact:
            return exact[0]
        matches = [r for r in runs if r.name.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise MetadataError(
                f"run {ref!r} is ambiguous: matches {', '.join(r.name for r in matches[:5])}"
            )
        raise MetadataError(
            f"unknown run {ref!r}; list runs with `mlops lineage runs` (or use latest / previous)"
        )

    # ---- artifacts, executions, events --------------------------------------------------------
    def all_artifacts(self) -> list[mlmd_pb2.Artifact]:
        """Every artifact in the store."""
        return list(self.mlmd.get_artifacts())

    def artifacts_by_uri(self, uri: str) -> list[mlmd_pb2.Artifact]:
        """Artifacts recorded at exactly this URI."""
        return list(self.mlmd.get_artifacts_by_uri(uri))

    def artifacts_by_id(self, ids: Iterable[int]) -> dict[int, mlmd_pb2.Artifact]:
        """Artifact id -> artifact, for the ids that exist."""
        ids = sorted(set(ids))
        return {a.id: a for a in self.mlmd.get_artifacts_by_id(ids)} if ids else {}

    def executions_by_id(self, ids: Iterable[int]) -> dict[int, mlmd_pb2.Execution]:
        """Execution id -> execution, for the ids that exist."""
        ids = sorted(set(ids))
        return {e.id: e for e in self.mlmd.get_executions_by_id(ids)} if ids else {}

    def events_of_executions(self, ids: Sequence[int]) -> list[mlmd_pb2.Event]:
        """Input and output events of these executions."""
        return list(self.mlmd.get_events_by_execution_ids(list(ids))) if ids else []

    def events_of_artifacts(self, ids: Sequence[int]) -> list[mlmd_pb2.Event]:
        """Events that made or used these artifacts."""
        return list(self.mlmd.get_events_by_artifact_ids(list(ids))) if ids else []

    def artifacts_of_type(self, type_name: str) -> list[mlmd_pb2.Artifact]:
        """Every artifact of a type; an unknown type name raises MetadataError listing the known."""
        if type_name not in self.artifact_types.values():
            known = ", ".join(sorted(self.artifact_types.values())) or "none"
            raise MetadataError(
                f"unknown artifact type {type_name!r}; types in this store: {known}"
            )
        return list(self.mlmd.get_artifacts_by_type(type_name))

    def producers(self, artifact_ids: Sequence[int]) -> dict[int, list[int]]:
        """Artifact id -> executions that output it, oldest first (later ones are cache hits)."""
        out: dict[int, list[int]] = {}
        for event in self.events_of_artifacts(artifact_ids):
            if is_output(event):
                out.setdefault(event.artifact_id, []).append(event.execution_id)
        for ids in out.values():
            ids.sort()
        return out

    def producer(self, artifact_id: int) -> mlmd_pb2.Execution | None:
        """The execution that first output the artifact (later ones are cache hits), or None."""
        ids = self.producers([artifact_id]).get(artifact_id)
        return self.executions_by_id(ids[:1]).get(ids[0]) if ids else None

    def consumers(self, artifact_id: int) -> list[mlmd_pb2.Execution]:
        """Executions that took the artifact as an input, oldest first."""
        ids = {e.execution_id for e in self.events_of_artifacts([artifact_id]) if is_input(e)}
        return [e for _, e in sorted(self.executions_by_id(ids).items())]

    def outputs(self, execution_id: int) -> dict[str, list[mlmd_pb2.Artifact]]:
        """An execution's output artifacts per output key (e.g. 'examples', 'blessing')."""
        return self._by_key(execution_id, is_output)

    def inputs(self, execution_id: int) -> dict[str, list[mlmd_pb2.Artifact]]:
        """An execution's input artifacts per input key. One artifact can appear under several
        keys: MLMD records it once per execution (e.g. a candidate that is also the baseline)."""
        return self._by_key(execution_id, is_input)

    def _by_key(self, execution_id: int, wanted) -> dict[str, list[mlmd_pb2.Artifact]]:
        events = [e for e in self.events_of_executions([execution_id]) if wanted(e)]
        artifacts = self.artifacts_by_id(e.artifact_id for e in events)
        by_key: dict[str, list[mlmd_pb2.Artifact]] = {}
        for event in events:
            keys = [s.key for s in event.path.steps if s.WhichOneof("value") == "key"] or [""]
            for key in keys:
                if event.artifact_id in artifacts:
                    by_key.setdefault(key, []).append(artifacts[event.artifact_id])
        return by_key

    def lineage_subgraph(
        self, artifact_ids: Sequence[int], direction: int, max_hops: int
    ) -> mlmd_pb2.LineageGraph:
        """MLMD's lineage subgraph from these artifacts (direction: LineageSubgraphQueryOptions
        UPSTREAM / DOWNSTREAM / BIDIRECTIONAL)."""
        options = mlmd_pb2.LineageSubgraphQueryOptions(max_num_hops=max_hops, direction=direction)
        options.starting_artifacts.filter_query = "id IN ({})".format(
            ", ".join(str(i) for i in artifact_ids)
        )
        return self.mlmd.get_lineage_subgraph(options)

    def component_name(self, execution: mlmd_pb2.Execution) -> str:
        """The execution's node id ('Trainer'), else the last part of its type name."""
        node = self.node_of_execution.get(execution.id)
        if node:
            return node
        return self.execution_type(execution).rsplit(".", 1)[-1]

    def upstream(
        self, artifact_ids: Iterable[int], skip_inputs: Iterable[str] = ()
    ) -> dict[int, int]:
        """Everything these artifacts were made from: artifact id -> the artifact it was reached
        from (itself for the starting ones), walking OUTPUT events to the executions that made
        each artifact and their INPUT events back, to the data. The other outputs of those
        executions come along (a trace shows them beside each step: the Evaluator's evaluation
        beside its blessing, the RowCleaner's quarantine beside its examples). Inputs under a key
        in `skip_inputs` (a comparison baseline, not a source) are not followed."""
        skip = set(skip_inputs)
        reached = {i: i for i in artifact_ids}
        frontier = sorted(reached)
        seen_executions: set[int] = set()
        while frontier:
            made_by = {
                e.execution_id: e.artifact_id
                for e in self.events_of_artifacts(frontier)
                if is_output(e) and e.execution_id not in seen_executions
            }
            seen_executions |= set(made_by)
            frontier = []
            for event in self.events_of_executions(sorted(made_by)):
                keys = {s.key for s in event.path.steps if s.WhichOneof("value") == "key"}
                if is_output(event):
                    reached.setdefault(event.artifact_id, made_by[event.execution_id])
                    continue
                if not is_input(event) or (keys and keys <= skip):
                    continue
                if event.artifact_id not in reached:
                    reached[event.artifact_id] = made_by[event.execution_id]
                    frontier.append(event.artifact_id)
            frontier.sort()
        return reached

    def data_checks(self, examples_ids: Iterable[int]) -> set[int]:
        """What the data checks made of these Examples: the StatisticsGen outputs computed from
        them, and what the ExampleValidator, DriftValidator and DataGate made of those statistics
        (anomalies, drift, accepted statistics). A trace shows them beside the examples, and the
        live skew monitor compares a served version's traffic with its training statistics."""
        first = self._consumer_outputs(examples_ids, {STATISTICS_GEN})
        checks = {DRIFT_VALIDATOR, DATA_GATE, EXAMPLE_VALIDATOR}
        return first | self._consumer_outputs(first, checks)

    def _consumer_outputs(self, artifact_ids: Iterable[int], nodes: set[str]) -> set[int]:
        """Outputs of the executions of `nodes` that read any of these artifacts."""
        readers = {
            e.execution_id
            for e in self.events_of_artifacts(sorted(set(artifact_ids)))
            if is_input(e) and self.node_of_execution.get(e.execution_id) in nodes
        }
        return {e.artifact_id for e in self.events_of_executions(sorted(readers)) if is_output(e)}

    def pipeline_artifacts(self, pipeline_name: str) -> list[mlmd_pb2.Artifact]:
        """Every artifact TFX attributed to one pipeline (its 'pipeline' context), oldest first."""
        context = self.mlmd.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline_name)
        if context is None:
            return []
        return sorted(self.mlmd.get_artifacts_by_context(context.id), key=lambda a: a.id)

    def run_artifact_ids(
        self, run: str | mlmd_pb2.Context, skip_inputs: Iterable[str] = ()
    ) -> set[int]:
        """Ids of the artifacts a run's executions wrote (cached ones re-publish theirs) or read,
        except inputs under a key in `skip_inputs`. A running execution's inputs count too: TFX
        records them when the execution starts."""
        context = self.resolve_run(run) if isinstance(run, str) else run
        ids = [e.id for e in self.mlmd.get_executions_by_context(context.id)]
        skip = set(skip_inputs)
        found = set()
        for event in self.events_of_executions(ids):
            keys = {s.key for s in event.path.steps if s.WhichOneof("value") == "key"}
            if is_output(event) or (is_input(event) and not (keys and keys <= skip)):
                found.add(event.artifact_id)
        return found

    # ---- upkeep: the only writes, on a store opened with writable=True --------------------------
    def mark_deleted(self, artifact_ids: Iterable[int]) -> list[int]:
        """Mark artifacts DELETED (their payload is gone; metadata, events and lineage stay, as
        TFX's garbage-collection design intends). TFX's cache and input resolution use LIVE
        artifacts only, so no later run is handed one. Returns the ids changed."""
        changed = []
        for artifact in self.artifacts_by_id(artifact_ids).values():
            if artifact.state != mlmd_pb2.Artifact.DELETED:
                artifact.state = mlmd_pb2.Artifact.DELETED
                changed.append(artifact)
        if changed:
            self.mlmd.put_artifacts(changed)
        return [a.id for a in changed]

    def record_action(
        self, type_name: str, properties: dict[str, str], artifact_ids: Iterable[int], key: str
    ) -> int:
        """An audit record: one COMPLETE execution of `type_name` with these string properties and
        an INPUT event (path `key`) to each artifact, in no context (no pipeline run sees it), as
        the registry records its ModelActions. Returns the execution id."""
        execution_type = mlmd_pb2.ExecutionType(name=type_name)
        for name in properties:
            execution_type.properties[name] = mlmd_pb2.STRING
        type_id = self.mlmd.put_execution_type(execution_type, can_add_fields=True)
        execution = mlmd_pb2.Execution(type_id=type_id)
        execution.last_known_state = mlmd_pb2.Execution.COMPLETE
        for name, value in properties.items():
            execution.properties[name].string_value = str(value)
        pairs = []
        for index, artifact in enumerate(self.artifacts_by_id(artifact_ids).values()):
            event = mlmd_pb2.Event(type=mlmd_pb2.Event.INPUT, artifact_id=artifact.id)
            event.path.steps.add().key = key
            event.path.steps.add().index = index
            pairs.append((artifact, event))
        execution_id, _, _ = self.mlmd.put_execution(execution, pairs, contexts=[])
        return execution_id

    def actions(self, type_name: str) -> list[ActionRecord]:
        """The audit records of one type, oldest first, with the artifacts each names."""
        try:
            executions = self.mlmd.get_executions_by_type(type_name)
        except Exception:  # no such type yet: nothing recorded
            return []
        executions = sorted(executions, key=lambda e: (e.create_time_since_epoch, e.id))
        events = self.events_of_executions([e.id for e in executions])
        out = []
        for e in executions:
            out.append(
                ActionRecord(
                    execution_id=e.id,
                    created_ms=e.create_time_since_epoch,
                    properties={k: v.string_value for k, v in e.properties.items()},
                    artifact_ids=sorted(v.artifact_id for v in events if v.execution_id == e.id),
                )
            )
        return out

    # ---- typed queries -------------------------------------------------------------------------
    def runs(self, pipeline_name: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Pipeline runs newest first (of one pipeline, if given), with state and duration."""
        contexts = self.run_contexts
        if pipeline_name is not None:
            contexts = [c for c in contexts if self.pipeline_of_run(c) == pipeline_name]
        if limit:
            contexts = contexts[:limit]
        return [self.run(c) for c in contexts]

    def run(self, run: str | mlmd_pb2.Context, pipeline_name: str | None = None) -> RunRecord:
        """One run by reference (see `resolve_run`, of `pipeline_name` when given) or context."""
        context = self.resolve_run(run, pipeline_name) if isinstance(run, str) else run
        executions = self.executions(context)
        starts = [e.started_ms for e in executions] or [context.create_time_since_epoch]
        ends = [e.ended_ms for e in executions] or [context.last_update_time_since_epoch]
        pipeline = self.pipeline_of_run(context)
        status, why = self.checked_status(
            [e.state for e in executions], pipeline, context.create_time_since_epoch
        )
        return RunRecord(
            run_id=context.name,
            pipeline=pipeline,
            started_ms=min(starts),
            duration_s=round(max(0, max(ends) - min(starts)) / 1000, 1),
            status=status,
            executions=executions,
            context_id=context.id,
            status_reason=why,
        )

    @functools.cached_property
    def run_processes(self) -> list[RunProcess]:
        """The local runner's process records (metadata/run_process.py)."""
        return processes(self.mlmd)

    def checked_status(
        self, states: Iterable[str], pipeline: str, run_created_ms: int
    ) -> tuple[str, str]:
        """(status, why) of a run from its executions' states, "failed" for a "running" run
        whose recorded process is gone (metadata/run_process.py)."""
        return checked_status(run_status(states), self.run_processes, pipeline, run_created_ms)

    def latest_run(self, pipeline_name: str | None = None) -> RunRecord | None:
        """The newest run of `pipeline_name` (else of any pipeline in the store), or None."""
        contexts = self.run_contexts
        if pipeline_name is not None:
            contexts = [c for c in contexts if self.pipeline_of_run(c) == pipeline_name] or contexts
        return self.run(contexts[0]) if contexts else None

    def executions(self, run: str | mlmd_pb2.Context) -> list[ExecutionRecord]:
        """A run's component executions in start order, with state and duration."""
        context = self.resolve_run(run) if isinstance(run, str) else run
        executions = sorted(
            self.mlmd.get_executions_by_context(context.id),
            key=lambda e: (e.create_time_since_epoch, e.id),
        )
        return [self._execution_record(e, context.name) for e in executions]

    def node_executions(self, pipeline_name: str, node_id: str) -> list[ExecutionRecord]:
        """Every execution of one component of a pipeline across runs, newest first."""
        node = self.mlmd.get_context_by_type_and_name(NODE_CONTEXT, f"{pipeline_name}.{node_id}")
        if node is None:
            return []
        executions = sorted(
            self.mlmd.get_executions_by_context(node.id),
            key=lambda e: (e.create_time_since_epoch, e.id),
            reverse=True,
        )
        return [self._execution_record(e, self.run_of_execution.get(e.id, "")) for e in executions]

    def _execution_record(self, e: mlmd_pb2.Execution, run_id: str) -> ExecutionRecord:
        return ExecutionRecord(
            id=e.id,
            node_id=self.component_name(e),
            type=self.execution_type(e),
            state=state_name(e),
            started_ms=e.create_time_since_epoch,
            ended_ms=e.last_update_time_since_epoch,
            run_id=run_id,
            properties=properties_of(e),
        )

    def run_outputs(
        self, run: str | mlmd_pb2.Context
    ) -> dict[str, dict[str, list[mlmd_pb2.Artifact]]]:
        """node id -> output key -> artifacts, for every execution of one run (cached ones too:
        they re-publish the artifacts they reused)."""
        out: dict[str, dict[str, list[mlmd_pb2.Artifact]]] = {}
        for execution in self.executions(run):
            for key, artifacts in self.outputs(execution.id).items():
                out.setdefault(execution.node_id, {}).setdefault(key, []).extend(artifacts)
        return out

    def node_artifacts(
        self, pipeline_name: str, node_id: str, type_name: str | None = None
    ) -> list[mlmd_pb2.Artifact]:
        """Live artifacts attributed to one component of a pipeline, newest first."""
        node = self.mlmd.get_context_by_type_and_name(NODE_CONTEXT, f"{pipeline_name}.{node_id}")
        if node is None:
            return []
        artifacts = [
            a
            for a in self.mlmd.get_artifacts_by_context(node.id)
            if a.state == mlmd_pb2.Artifact.LIVE
            and (type_name is None or self.artifact_type(a) == type_name)
        ]
        return sorted(artifacts, key=lambda a: (a.create_time_since_epoch, a.id), reverse=True)

    def spans(self, pipeline_name: str | None = None) -> list[SpanRecord]:
        """One record per run that ingested a span, newest run first: the span, whether the
        DataGate let it through, and the URIs of its statistics, anomalies and drift."""
        records = []
        for run in self.runs(pipeline_name):
            outputs = self.run_outputs(run.run_id)
            examples = _first(
                next((v.get("examples") for k, v in outputs.items() if is_example_gen(k)), None)
            )
            if examples is None:
                continue
            gate = [e.state for e in run.executions if e.node_id == DATA_GATE]
            drift = _first(outputs.get(DRIFT_VALIDATOR, {}).get("drift"))
            previous = properties_of(drift).get(PREVIOUS_SPAN_PROPERTY) if drift else None
            records.append(
                SpanRecord(
                    span=span_of(examples),
                    run_id=run.run_id,
                    examples_id=examples.id,
                    examples_uri=examples.uri,
                    created_ms=examples.create_time_since_epoch,
                    gate_passed=(gate[-1] in ("complete", "cached")) if gate else None,
                    statistics_uri=_uri(outputs.get(STATISTICS_GEN, {}).get("statistics")),
                    anomalies_uri=_uri(outputs.get(EXAMPLE_VALIDATOR, {}).get("anomalies")),
                    drift_uri=drift.uri if drift else None,
                    previous_span=previous if isinstance(previous, int) and previous >= 0 else None,
                )
            )
        return records

    def last_accepted_span(self, pipeline_name: str | None = None) -> SpanRecord | None:
        """The newest run's span that passed the data gate (what later runs build on)."""
        return next((s for s in self.spans(pipeline_name) if s.gate_passed), None)

    def accepted_examples(
        self, accepted_statistics_ids: Sequence[int]
    ) -> dict[int, mlmd_pb2.Artifact]:
        """Accepted-statistics artifact id (a DataGate output) -> the Examples artifact whose
        statistics that gate accepted, traced through MLMD events: the gate execution that output
        it -> the gate's `statistics` input -> the StatisticsGen execution that output those ->
        its `examples` input. By lineage, not by span number: a span ingested twice (a rejected
        version, then a fixed one) maps to the exact version the gate passed. Ids that trace to
        nothing are left out."""
        gate = self._first_producers(accepted_statistics_ids)
        statistics = self._input_of(gate.values(), "statistics")
        statistics_gen = self._first_producers(statistics.values())
        examples = self._input_of(statistics_gen.values(), "examples")
        traced = {}
        for accepted_id, gate_id in gate.items():
            statistics_id = statistics.get(gate_id)
            examples_id = examples.get(statistics_gen.get(statistics_id, -1))
            if examples_id is not None:
                traced[accepted_id] = examples_id
        artifacts = self.artifacts_by_id(traced.values())
        return {a: artifacts[e] for a, e in traced.items() if e in artifacts}

    def _first_producers(self, artifact_ids: Iterable[int]) -> dict[int, int]:
        """Artifact id -> the execution that first output it (an OUTPUT event: cached executions
        re-publish it later, and resolvers re-publish it as INTERNAL_OUTPUT)."""
        first: dict[int, int] = {}
        for event in self.events_of_artifacts(sorted(set(artifact_ids))):
            if event.type == mlmd_pb2.Event.OUTPUT:
                previous = first.get(event.artifact_id, event.execution_id)
                first[event.artifact_id] = min(previous, event.execution_id)
        return first

    def _input_of(self, execution_ids: Iterable[int], key: str) -> dict[int, int]:
        """Execution id -> the artifact id of its input `key` (the first, if several)."""
        found: dict[int, int] = {}
        for event in self.events_of_executions(sorted(set(execution_ids))):
            if is_input(event) and event_key(event) == key:
                found.setdefault(event.execution_id, event.artifact_id)
        return found

    def training_spans(self, run: str | mlmd_pb2.Context | RunRecord) -> list[int]:
        """The spans a run trained on, ascending: those of the Examples its Transform read (the
        newest span alone, or the training window of `--train-spans N`). [] when no Transform
        ran (the data gate stopped the run)."""
        record = run if isinstance(run, RunRecord) else self.run(run)
        transform = record.execution(TRANSFORM)
        if transform is None:
            return []
        examples = self.inputs(transform.id).get("examples", [])
        return sorted({s for s in map(span_of, examples) if s is not None})

    def latest_statistics_uri(self, pipeline_name: str) -> str | None:
        """The URI of the newest StatisticsGen output of a pipeline, or None."""
        found = self.node_artifacts(pipeline_name, STATISTICS_GEN, "ExampleStatistics")
        return found[0].uri if found else None

    def pushed_models(
        self, pipeline_name: str | None = None, *, only_pushed: bool = True
    ) -> list[PushedModelRecord]:
        """PushedModel artifacts newest first, with version, destination, run and source Model."""
        if "PushedModel" not in self.artifact_types.values():
            return []
        records = []
        artifacts = sorted(
            self.mlmd.get_artifacts_by_type("PushedModel"),
            key=lambda a: (a.create_time_since_epoch, a.id),
            reverse=True,
        )
        producers = self.producers([a.id for a in artifacts])
        for artifact in artifacts:
            props = properties_of(artifact)
            pushed = props.get("pushed") == 1
            if only_pushed and not pushed:
                continue
            execution = (producers.get(artifact.id) or [None])[0]
            run_id = self.run_of_execution.get(execution, "") if execution else ""
            if pipeline_name is not None and run_id:
                context = next(c for c in self.run_contexts if c.name == run_id)
                if self.pipeline_of_run(context) != pipeline_name:
                    continue
            model = _first(self.inputs(execution).get("model")) if execution else None
            version = props.get("pushed_version")
            records.append(
                PushedModelRecord(
                    artifact_id=artifact.id,
                    pushed=pushed,
                    version=str(version) if version not in (None, "") else None,
                    destination=props.get("pushed_destination"),
                    uri=artifact.uri,
                    created_ms=artifact.create_time_since_epoch,
                    run_id=run_id,
                    model_id=model.id if model else None,
                    execution_id=execution,
                )
            )
        return records

    def training_statistics_uri(self, version: str, pipeline_name: str | None = None) -> str | None:
        """The StatisticsGen output of the data a served version was trained on (the live skew
        monitor's baseline), or None when MLMD has no such push: the pushed model of `version`
        -> the Trainer that made it -> its transformed examples -> the Transform -> its raw
        Examples -> the StatisticsGen execution that read them. Lineage, not "the newest
        statistics": a later run on a new span does not change what a served version learnt."""
        pushed = [p for p in self.pushed_models(pipeline_name) if p.version == str(version)]
        if not pushed or pushed[0].model_id is None:
            return None
        examples = self._input_upstream(pushed[0].model_id, "examples")  # Transform's output
        raw = self._input_upstream(examples.id, "examples") if examples else None
        if raw is None:
            return None
        readers = [
            e.execution_id
            for e in self.events_of_artifacts([raw.id])
            if is_input(e) and event_key(e) == "examples"
        ]
        for execution_id in sorted(readers, reverse=True):
            if self.node_of_execution.get(execution_id) == STATISTICS_GEN:
                statistics = _first(self.outputs(execution_id).get("statistics"))
                if statistics is not None:
                    return statistics.uri
        return None

    def _input_upstream(self, artifact_id: int, key: str) -> mlmd_pb2.Artifact | None:
        """The `key` input of the first execution that produced the artifact."""
        producer = (self.producers([artifact_id]).get(artifact_id) or [None])[0]
        return _first(self.inputs(producer).get(key)) if producer is not None else None


def span_of(artifact: mlmd_pb2.Artifact) -> int | None:
    """An Examples artifact's span (TFX 1.16's ExampleGen keeps it in a custom property)."""
    props = properties_of(artifact)
    span = props.get("span")
    return int(span) if isinstance(span, int | float) else None


def _first(artifacts: list[mlmd_pb2.Artifact] | None) -> mlmd_pb2.Artifact | None:
    return artifacts[0] if artifacts else None


def _uri(artifacts: list[mlmd_pb2.Artifact] | None) -> str | None:
    return artifacts[0].uri if artifacts else None


def is_output(event: mlmd_pb2.Event) -> bool:
    """Whether the event records an execution's output (declared, internal or pending too)."""
    return event.type in (
        mlmd_pb2.Event.OUTPUT,
        mlmd_pb2.Event.DECLARED_OUTPUT,
        mlmd_pb2.Event.INTERNAL_OUTPUT,
        mlmd_pb2.Event.PENDING_OUTPUT,
    )


def is_input(event: mlmd_pb2.Event) -> bool:
    """Whether the event records an execution's input."""
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
