"""Every ML Metadata read and write of the registry, in one module.

The audit trail is MLMD's own vocabulary: each promote / rollback / retire is an Execution of type
`ModelAction` (who, when, action, from/to version, label, reason) with INPUT events to the
PushedModel artifacts of the versions involved, so `mlops lineage trace <version>` finds it from
the model's side. Pipeline pushes are read from the Pusher executions, so one history holds both.
Nothing here deletes anything.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from metadata.connection import ConnectionConfigError, connection_config_from_url, scrub
from registry.errors import RegistryError

ACTION_TYPE = "ModelAction"
ACTION_PROPERTIES = (
    "model",
    "who",
    "when",
    "action",
    "from_version",
    "to_version",
    "label",
    "reason",
)
PUSHED_MODEL = "PushedModel"
_OUTPUT = (mlmd.Event.OUTPUT, mlmd.Event.DECLARED_OUTPUT)
_INPUT = (mlmd.Event.INPUT, mlmd.Event.DECLARED_INPUT)


@dataclass
class Action:
    """One entry of a model's history (an audit record or a pipeline push)."""

    action: str
    when: str
    who: str
    model: str = ""
    label: str = ""
    from_version: str = ""
    to_version: str = ""
    reason: str = ""
    path: str = ""
    millis: int = 0
    execution_id: int | None = None
    artifact_ids: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def who_am_i() -> str:
    """user@host, overridable (CI jobs, service accounts) with MLOPS_ACTOR."""
    return os.environ.get("MLOPS_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def utc_iso(millis: int) -> str:
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="seconds")


def _value(v: mlmd.Value) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("int_value", "double_value", "string_value") else None


def props(node: mlmd.Artifact | mlmd.Execution) -> dict[str, Any]:
    out = {k: _value(v) for k, v in node.custom_properties.items()}
    out.update({k: _value(v) for k, v in node.properties.items()})
    return out


class RegistryStore:
    """A read-write connection to the pipeline's metadata store (SQLite path or URL)."""

    def __init__(self, url: str, *, create: bool = False) -> None:
        try:
            config = connection_config_from_url(url)
        except ConnectionConfigError as e:
            raise RegistryError(str(e)) from None
        if config.WhichOneof("config") == "sqlite" and not create:
            if not os.path.isfile(config.sqlite.filename_uri):
                raise RegistryError(f"metadata store not found: {config.sqlite.filename_uri}")
        try:
            self.store = metadata_store.MetadataStore(config)
            self.store.get_context_types()
        except Exception as e:  # MLMD raises errors.* and RuntimeError from C++
            raise RegistryError(f"cannot open metadata store: {scrub(str(e), config)}") from None

    # ---- pushed models ---------------------------------------------------------------------
    def pushed_models(self) -> list[mlmd.Artifact]:
        try:
            return list(self.store.get_artifacts_by_type(PUSHED_MODEL))
        except mlmd_errors.NotFoundError:
            return []

    def pushed_model_for(self, version: str, model_uri: str | None = None) -> mlmd.Artifact | None:
        """The PushedModel of a served version: by pushed_version, else by the model it copies."""
        pushed = [a for a in self.pushed_models() if props(a).get("pushed") == 1]
        for a in sorted(pushed, key=lambda a: -a.id):
            if str(props(a).get("pushed_version", "")) == str(version):
                return a
        if model_uri:
            models = self.store.get_artifacts_by_uri(model_uri)
            ids = {m.id for m in models}
            if ids:
                pushers = {
                    e.execution_id
                    for e in self.store.get_events_by_artifact_ids(list(ids))
                    if e.type in _INPUT
                }
                outs = {
                    e.artifact_id
                    for e in self.store.get_events_by_execution_ids(list(pushers))
                    if e.type in _OUTPUT
                }
                for a in sorted(pushed, key=lambda a: -a.id):
                    if a.id in outs:
                        return a
        return None

    def model_of_pushed(self, pushed: mlmd.Artifact) -> mlmd.Artifact | None:
        """The Model artifact the Pusher copied (its 'model' input)."""
        producer = self.producer(pushed.id)
        if producer is None:
            return None
        for event in self.store.get_events_by_execution_ids([producer.id]):
            if event.type in _INPUT and _key(event) == "model":
                return self.store.get_artifacts_by_id([event.artifact_id])[0]
        return None

    def producer(self, artifact_id: int) -> mlmd.Execution | None:
        ids = sorted(
            e.execution_id
            for e in self.store.get_events_by_artifact_ids([artifact_id])
            if e.type in _OUTPUT
        )
        return self.store.get_executions_by_id(ids[:1])[0] if ids else None

    def inputs(self, execution_id: int) -> dict[str, list[mlmd.Artifact]]:
        return self._linked(execution_id, _INPUT)

    def outputs(self, execution_id: int) -> dict[str, list[mlmd.Artifact]]:
        return self._linked(execution_id, _OUTPUT)

    def _linked(self, execution_id: int, types) -> dict[str, list[mlmd.Artifact]]:
        events = [
            e for e in self.store.get_events_by_execution_ids([execution_id]) if e.type in types
        ]
        artifacts = {
            a.id: a for a in self.store.get_artifacts_by_id([e.artifact_id for e in events])
        }
        out: dict[str, list[mlmd.Artifact]] = {}
        for e in events:
            out.setdefault(_key(e), []).append(artifacts[e.artifact_id])
        return out

    def artifact(self, artifact_id: int) -> mlmd.Artifact:
        found = self.store.get_artifacts_by_id([artifact_id])
        if not found:
            raise RegistryError(f"no artifact with id {artifact_id} in the metadata store")
        return found[0]

    def artifact_type(self, artifact: mlmd.Artifact) -> str:
        return self.store.get_artifact_types_by_id([artifact.type_id])[0].name

    def upstream(self, artifact_id: int, hops: int = 20) -> mlmd.LineageGraph:
        options = mlmd.LineageSubgraphQueryOptions(
            max_num_hops=hops, direction=mlmd.LineageSubgraphQueryOptions.UPSTREAM
        )
        options.starting_artifacts.filter_query = f"id = {artifact_id}"
        return self.store.get_lineage_subgraph(options)

    def downstream_executions(self, artifact_id: int) -> list[mlmd.Execution]:
        ids = [
            e.execution_id
            for e in self.store.get_events_by_artifact_ids([artifact_id])
            if e.type in _INPUT
        ]
        return list(self.store.get_executions_by_id(sorted(set(ids))))

    def execution_type(self, execution: mlmd.Execution) -> str:
        return self.store.get_execution_types_by_id([execution.type_id])[0].name

    def run_of(self, execution_id: int) -> str:
        for ctx in self.store.get_contexts_by_execution(execution_id):
            if ctx.type == "pipeline_run":
                return ctx.name
        return ""

    # ---- audit trail -----------------------------------------------------------------------
    def _action_type_id(self) -> int:
        t = mlmd.ExecutionType(name=ACTION_TYPE)
        for name in ACTION_PROPERTIES:
            t.properties[name] = mlmd.STRING
        return self.store.put_execution_type(t, can_add_fields=True)

    def record(self, action: Action, artifacts: dict[str, mlmd.Artifact | None]) -> Action:
        """Write one audit execution, linked by INPUT events (keyed 'from'/'to'/...) to models."""
        execution = mlmd.Execution(type_id=self._action_type_id())
        execution.last_known_state = mlmd.Execution.COMPLETE
        for name in ACTION_PROPERTIES:
            execution.properties[name].string_value = str(getattr(action, name) or "")
        pairs = []
        for key, artifact in artifacts.items():
            # One event per artifact (MLMD keeps events unique per artifact, execution and type).
            if artifact is None or any(a.id == artifact.id for a, _ in pairs):
                continue
            event = mlmd.Event(type=mlmd.Event.INPUT, artifact_id=artifact.id)
            event.path.steps.add().key = key
            event.path.steps.add().index = 0
            pairs.append((artifact, event))
        execution_id, _, _ = self.store.put_execution(execution, pairs, contexts=[])
        action.execution_id = execution_id
        action.artifact_ids = [a.id for a, _ in pairs]
        return action

    def actions(self, model: str | None = None) -> list[Action]:
        """Every recorded ModelAction, oldest first."""
        try:
            executions = self.store.get_executions_by_type(ACTION_TYPE)
        except mlmd_errors.NotFoundError:
            return []
        out = []
        for e in sorted(executions, key=lambda e: (e.create_time_since_epoch, e.id)):
            p = props(e)
            if model and p.get("model") not in (model, ""):
                continue
            out.append(
                Action(
                    action=p.get("action", ""),
                    when=p.get("when", ""),
                    who=p.get("who", ""),
                    model=p.get("model", ""),
                    label=p.get("label", ""),
                    from_version=p.get("from_version", ""),
                    to_version=p.get("to_version", ""),
                    reason=p.get("reason", ""),
                    millis=e.create_time_since_epoch,
                    execution_id=e.id,
                )
            )
        return out

    def pushes(self) -> list[Action]:
        """Pipeline pushes, from the Pusher executions that output a pushed PushedModel."""
        out = []
        for a in self.pushed_models():
            p = props(a)
            if p.get("pushed") != 1:
                continue
            producer = self.producer(a.id)
            millis = (
                producer.last_update_time_since_epoch if producer else a.create_time_since_epoch
            )
            run = self.run_of(producer.id) if producer else ""
            out.append(
                Action(
                    action="push",
                    when=utc_iso(millis),
                    who="pipeline",
                    to_version=str(p.get("pushed_version", "")),
                    reason=f"blessed and pushed by run {run}" if run else "blessed and pushed",
                    path=str(p.get("pushed_destination", "")),
                    millis=millis,
                    execution_id=producer.id if producer else None,
                    artifact_ids=[a.id],
                )
            )
        return out


def _key(event: mlmd.Event) -> str:
    for step in event.path.steps:
        if step.WhichOneof("value") == "key":
            return step.key
    return ""
