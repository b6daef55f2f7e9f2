"""The registry's own ML Metadata records: the audit trail, written and read here.

The audit trail is MLMD's own vocabulary: each promote / rollback / retire is an Execution of type
`ModelAction` (who, when, action, from/to version, label, reason) with INPUT events to the
PushedModel artifacts of the versions involved, so `mlops lineage trace <version>` finds it from
the model's side. Pipeline pushes are read from the Pusher executions through metadata/
(MetadataStore.pushed_models), so one history holds both. Nothing here deletes anything.
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

from metadata.connection import (
    ConnectionConfigError,
    connection_config_from_url,
    describe_connection,
    scrub,
)
from metadata.store import MetadataStore
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


class RegistryStore:
    """A read-write connection to the pipeline's metadata store (SQLite path or URL).

    Reads of what the pipeline recorded go through metadata/'s MetadataStore (`self.metadata`);
    what is left here is the registry's own: the ModelAction audit trail, written and read.
    """

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
        self.metadata = MetadataStore(self.store, describe_connection(config))

    def pushed_model_for(self, version: str, model_uri: str | None = None) -> int | None:
        """The PushedModel artifact id of a served version: by pushed_version, else by the
        Model it copies (its push marker's model_uri)."""
        records = self.metadata.pushed_models()  # pushed ones, newest first
        for record in records:
            if record.version == str(version):
                return record.artifact_id
        if model_uri:
            models = {a.id for a in self.metadata.artifacts_by_uri(model_uri)}
            for record in records:
                if record.model_id in models:
                    return record.artifact_id
        return None

    # ---- audit trail -----------------------------------------------------------------------
    def _action_type_id(self) -> int:
        t = mlmd.ExecutionType(name=ACTION_TYPE)
        for name in ACTION_PROPERTIES:
            t.properties[name] = mlmd.STRING
        return self.store.put_execution_type(t, can_add_fields=True)

    def record(self, action: Action, artifacts: dict[str, int | None]) -> Action:
        """Write one audit execution, linked by INPUT events (keyed 'from'/'to'/...) to the
        PushedModel artifacts with these ids."""
        execution = mlmd.Execution(type_id=self._action_type_id())
        execution.last_known_state = mlmd.Execution.COMPLETE
        for name in ACTION_PROPERTIES:
            execution.properties[name].string_value = str(getattr(action, name) or "")
        found = self.metadata.artifacts_by_id(i for i in artifacts.values() if i is not None)
        pairs = []
        for key, artifact_id in artifacts.items():
            # One event per artifact (MLMD keeps events unique per artifact, execution and type).
            if artifact_id not in found or any(a.id == artifact_id for a, _ in pairs):
                continue
            event = mlmd.Event(type=mlmd.Event.INPUT, artifact_id=artifact_id)
            event.path.steps.add().key = key
            event.path.steps.add().index = 0
            pairs.append((found[artifact_id], event))
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
            # Typed STRING properties read as written: a reason that happens to parse as JSON
            # stays text.
            p = {k: v.string_value for k, v in e.properties.items() if k in ACTION_PROPERTIES}
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
        records = self.metadata.pushed_models()
        pushers = self.metadata.executions_by_id(
            r.execution_id for r in records if r.execution_id is not None
        )
        out = []
        for r in records:
            producer = pushers.get(r.execution_id) if r.execution_id is not None else None
            millis = producer.last_update_time_since_epoch if producer else r.created_ms
            out.append(
                Action(
                    action="push",
                    when=utc_iso(millis),
                    who="pipeline",
                    to_version=r.version or "",
                    reason=f"blessed and pushed by run {r.run_id}"
                    if r.run_id
                    else "blessed and pushed",
                    path=str(r.destination or ""),
                    millis=millis,
                    execution_id=r.execution_id,
                    artifact_ids=[r.artifact_id],
                )
            )
        return out
