"""Plain records the metadata store's typed queries return (no MLMD protos, JSON-ready via
`dataclasses.asdict`), so the report, the lineage CLI, a UI and a model registry share them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any


@dataclasses.dataclass(frozen=True)
class ExecutionRecord:
    """One component execution: its node id, state ('complete', 'cached', 'failed', ...) and
    start/end in epoch milliseconds."""

    id: int
    node_id: str
    type: str
    state: str
    started_ms: int
    ended_ms: int
    run_id: str = ""
    properties: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def seconds(self) -> float:
        """Wall time between MLMD's create and last-update timestamps."""
        return max(0, self.ended_ms - self.started_ms) / 1e3


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One pipeline run (a pipeline_run context): overall status and its executions."""

    run_id: str
    pipeline: str
    started_ms: int
    duration_s: float
    status: str  # 'complete', 'failed' or 'running'
    executions: list[ExecutionRecord]
    context_id: int = 0
    # Why the status is not what the executions' states say (a "running" run whose process is
    # gone is failed: metadata/run_process.py); '' when it is.
    status_reason: str = ""

    def execution(self, node_id: str) -> ExecutionRecord | None:
        """The run's (last) execution of one component, or None."""
        found = [e for e in self.executions if e.node_id == node_id]
        return found[-1] if found else None


@dataclasses.dataclass(frozen=True)
class SpanRecord:
    """A span as one run ingested it, and what the data checks made of it."""

    span: int | None
    run_id: str
    examples_id: int
    examples_uri: str
    created_ms: int
    # True: the DataGate passed (or was cached), False: it stopped the run, None: no gate ran.
    gate_passed: bool | None
    statistics_uri: str | None
    anomalies_uri: str | None
    drift_uri: str | None
    previous_span: int | None  # the span the drift check compared with (None: none earlier)


@dataclasses.dataclass(frozen=True)
class PushedModelRecord:
    """A Pusher output: whether it pushed, the served version and directory, the source Model."""

    artifact_id: int
    pushed: bool
    version: str | None
    destination: str | None
    uri: str
    created_ms: int
    run_id: str
    model_id: int | None
    execution_id: int | None = None  # the Pusher execution that output it


@dataclasses.dataclass(frozen=True)
class ActionRecord:
    """An audit record written by store upkeep (`mlops gc`, `mlops store check --repair`): what
    was done, by whom, when, and the artifacts it concerned."""

    execution_id: int
    created_ms: int
    properties: dict[str, str]
    artifact_ids: list[int]


def run_status(states: Iterable[str]) -> str:
    """A run's status from its executions' states: failed beats running beats complete."""
    states = set(states)
    if "failed" in states:
        return "failed"
    if states & {"running", "new"}:
        return "running"
    return "complete"
