"""Lineage-aware garbage collection of a pipeline's artifacts (`mlops gc`).

Every run writes examples, statistics, transformed data, models and evaluations under the
pipeline root and nothing removes them. Deleting directories by hand is unsafe twice over: the
served model may need them (its lineage is how a version is traced back to its data), and TFX's
cache could hand a later run an artifact whose files are gone. This module decides what may go
and removes it the way TFX's own garbage-collection design intends: the payload is deleted and
the artifact is marked DELETED in ML Metadata, its metadata, events and lineage kept. TFX 1.16's
cache lookup (`cache_utils._get_outputs_of_execution`, and pipeline/local/tfx_cache_fix.py's
replacement) treats an execution with a non-LIVE output as no cache entry, and its input
resolution hands components LIVE artifacts only, so the next run re-executes what it needs.

What is kept, whatever the policy says (each kept artifact carries the first reason found):
  - the lineage of every served version (numeric dirs under the model base path) and of every
    version a label in models.config names;
  - the lineage of the most recently blessed model (the Evaluator's next baseline);
  - the lineage of the drift gate's baseline: the accepted statistics of the last accepted span
    and of the highest span below it (what a re-run of the same span compares with);
  - what the newest `keep_last` runs and the runs younger than `keep_days` days wrote and read
    (a `--train-spans` window's earlier examples included), and its lineage.
Lineage is walked upstream through MLMD events (metadata/ MetadataStore.upstream), with the data
checks of every Examples in it (statistics, anomalies, drift: what a trace and the live skew
monitor read, MetadataStore.data_checks), without
following comparison inputs (`BASELINE_INPUTS`), which would otherwise chain every model and every
span to all earlier ones. Only artifacts whose files lie under the pipeline root are ever deleted:
imported ones (the committed best hyperparameters) and the serving directory are never touched.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterable

from google.protobuf import text_format
from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2
from tensorflow_serving.config import model_server_config_pb2

import model_layout
from cli_support import CommandError, Exit
from metadata.store import DATA_GATE, MetadataStore, properties_of
from modules.dataset_spec import Retention

# Inputs that are a comparison, not a source: the Evaluator's baseline model and the
# DriftValidator's history of accepted statistics (pipeline/pipeline.py names them).
BASELINE_INPUTS = ("baseline_model", "history")
# The audit record of every deletion (an MLMD execution type), and its event key.
ACTION_TYPE = "ArtifactDeletion"
ACTION_KEY = "deleted"
# Deleted payloads pass through here (a rename on the same file system, then rmtree).
TRASH_DIR = ".upkeep-trash"
# How many accepted spans the drift baseline keeps: the last, and the one below it.
DRIFT_BASELINE_SPANS = 2
_DAY_MS = 86_400_000


class UpkeepError(CommandError):
    """A user-facing failure; the CLI prints it as one line with its status (cli_support.Exit:
    FAILED unless a raise names the kind)."""

    def __init__(self, message: str, status: Exit = Exit.FAILED) -> None:
        super().__init__(message, status)


@dataclasses.dataclass(frozen=True)
class Item:
    """One artifact in a plan: what it is, where its files are, how big, and why it is kept."""

    artifact_id: int
    type: str
    uri: str
    bytes: int
    reason: str = ""


@dataclasses.dataclass
class Plan:
    """What a gc would do: the artifacts kept (with a reason) and those deleted."""

    pipeline: str
    pipeline_root: str
    policy: Retention
    kept: list[Item]
    deleted: list[Item]

    @property
    def bytes_freed(self) -> int:
        return sum(i.bytes for i in self.deleted)

    @property
    def bytes_kept(self) -> int:
        return sum(i.bytes for i in self.kept)

    def to_json(self) -> dict:
        return {
            "pipeline": self.pipeline,
            "pipeline_root": self.pipeline_root,
            "policy": dataclasses.asdict(self.policy),
            "bytes_freed": self.bytes_freed,
            "bytes_kept": self.bytes_kept,
            "deleted": [dataclasses.asdict(i) for i in self.deleted],
            "kept": [dataclasses.asdict(i) for i in self.kept],
        }


@dataclasses.dataclass
class Result:
    """What `apply` did: the artifacts now DELETED, the bytes freed and the audit record."""

    deleted_ids: list[int]
    bytes_freed: int
    audit_execution_id: int | None
    seconds: float


def size_of(path: str) -> int:
    """Bytes of a file or a directory tree (0 when missing); symlinks count as themselves."""
    if not os.path.lexists(path):
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return os.lstat(path).st_size
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def under(path: str, root: str) -> bool:
    """Whether `path` is strictly inside `root` (never the root itself)."""
    path, root = os.path.abspath(path), os.path.abspath(root)
    return path != root and os.path.commonpath([path, root]) == root


def labelled_versions(config_path: str, model_name: str) -> dict[str, int]:
    """label -> version from TF Serving's model config file ({} when there is none). A file that
    does not parse is an error: gc must not guess which versions a label protects."""
    if not os.path.isfile(config_path):
        return {}
    try:
        with open(config_path) as f:
            config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    except (OSError, text_format.ParseError) as e:
        raise UpkeepError(f"cannot read model config file {config_path}: {e}") from None
    for model in config.model_config_list.config:
        if model.name == model_name:
            return dict(model.version_labels)
    return {}


def require_pipeline(store: MetadataStore, pipeline_name: str) -> None:
    """A mistyped pipeline name must not read as "nothing to delete": name the ones there are."""
    if not store.pipeline_artifacts(pipeline_name):
        known = sorted(c.name for c in store.contexts("pipeline")) or ["none"]
        raise UpkeepError(
            f"no artifacts of pipeline {pipeline_name!r} in {store.where or 'the store'}; "
            f"pipelines there: {', '.join(known)} (--pipeline-name)",
            Exit.INPUT_MISSING,
        )


def protected_versions(serving_dir: str, model_config: str, model_name: str) -> dict[str, str]:
    """Served or labelled version -> why it is protected."""
    out = {str(v): f"served version {v}" for v in model_layout.list_versions(serving_dir)}
    for label, version in sorted(labelled_versions(model_config, model_name).items()):
        out.setdefault(str(version), f"version {version} labelled {label!r}")
        if out[str(version)].startswith("served"):
            out[str(version)] += f", labelled {label!r}"
    return out


def plan(
    store: MetadataStore,
    *,
    pipeline_name: str,
    pipeline_root: str,
    serving_dir: str,
    model_name: str,
    policy: Retention,
    model_config: str | None = None,
    now_ms: int | None = None,
) -> Plan:
    """Decide what a gc deletes and why everything else stays (reads only)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    require_pipeline(store, pipeline_name)
    model_config = model_config or model_layout.model_config_path(serving_dir)
    reasons: dict[int, str] = {}

    def keep(seeds: Iterable[int], why: str) -> None:
        lineage = store.upstream(seeds, BASELINE_INPUTS)
        for artifact_id in [*lineage, *store.data_checks(lineage)]:
            reasons.setdefault(artifact_id, why)

    # 1. Served and labelled versions: the PushedModel of each, and everything it came from.
    protected = protected_versions(serving_dir, model_config, model_name)
    for record in store.pushed_models(pipeline_name):
        if record.version in protected:
            keep([record.artifact_id], f"lineage of {protected[record.version]}")

    # 2. The most recently blessed model: the next run's Evaluator baseline.
    blessings = [
        a
        for a in store.pipeline_artifacts(pipeline_name)
        if store.artifact_type(a) == "ModelBlessing"
        and a.state == mlmd_pb2.Artifact.LIVE
        and properties_of(a).get("blessed") == 1
    ]
    if blessings:
        newest = max(blessings, key=lambda a: (a.create_time_since_epoch, a.id))
        keep([newest.id], "lineage of the most recently blessed model")

    # 3. The drift gate's baseline: accepted statistics of the newest accepted spans.
    accepted: dict[int, mlmd_pb2.Artifact] = {}
    for artifact in store.node_artifacts(pipeline_name, DATA_GATE, "ExampleStatistics"):
        span = properties_of(artifact).get("span")
        if isinstance(span, int | float) and int(span) not in accepted:
            accepted[int(span)] = artifact  # node_artifacts is newest first
    for span in sorted(accepted, reverse=True)[:DRIFT_BASELINE_SPANS]:
        keep([accepted[span].id], f"drift baseline: accepted statistics of span {span}")

    # 4. The retention policy: the newest runs, and the young ones.
    runs = [c for c in store.run_contexts if store.pipeline_of_run(c) == pipeline_name]
    for index, run in enumerate(runs):  # newest first
        age_days = (now_ms - run.create_time_since_epoch) / _DAY_MS
        if index < policy.keep_last:
            why = f"run {run.name}: one of the last {policy.keep_last} runs"
        elif policy.keep_days and age_days < policy.keep_days:
            why = f"run {run.name}: newer than {policy.keep_days:g} days"
        else:
            continue
        keep(store.run_artifact_ids(run, BASELINE_INPUTS), why)

    kept, deleted = [], []
    for artifact in store.pipeline_artifacts(pipeline_name):
        if artifact.state != mlmd_pb2.Artifact.LIVE or not artifact.uri:
            continue
        if not under(artifact.uri, pipeline_root):
            reason = reasons.get(artifact.id, "outside the pipeline root (imported): never deleted")
            kept.append(_item(store, artifact, reason))
        elif artifact.id in reasons:
            kept.append(_item(store, artifact, reasons[artifact.id]))
        else:
            deleted.append(_item(store, artifact))
    return Plan(pipeline_name, os.path.abspath(pipeline_root), policy, kept, deleted)


def _item(store: MetadataStore, artifact: mlmd_pb2.Artifact, reason: str = "") -> Item:
    return Item(
        artifact.id, store.artifact_type(artifact), artifact.uri, size_of(artifact.uri), reason
    )


def delete_payloads(
    store: MetadataStore,
    items: list[Item],
    *,
    pipeline_root: str,
    action: str,
    who: str,
    details: dict[str, str],
) -> Result:
    """Delete each artifact's files and mark it DELETED, one artifact at a time, then write one
    audit record naming every artifact marked. Per artifact the files are first renamed into the
    trash dir (one step: they are there or gone, never half), the artifact is marked DELETED, and
    only then the trash is removed; if MLMD refuses the mark, the files are renamed back. A gc
    stopped half-way leaves every artifact either LIVE with its files or DELETED."""
    started = time.monotonic()
    trash = os.path.join(pipeline_root, TRASH_DIR)
    done: list[int] = []
    freed = 0
    try:
        for item in items:
            if not under(item.uri, pipeline_root):
                raise UpkeepError(
                    f"refusing to delete {item.uri}: outside {pipeline_root}", Exit.REJECTED
                )
            moved = None
            if os.path.lexists(item.uri):
                os.makedirs(trash, exist_ok=True)
                moved = os.path.join(trash, f"{item.artifact_id}-{os.getpid()}")
                os.rename(item.uri, moved)
            try:
                store.mark_deleted([item.artifact_id])
            except BaseException:
                if moved:
                    os.rename(moved, item.uri)
                raise
            if moved:
                shutil.rmtree(moved) if os.path.isdir(moved) else os.unlink(moved)
            done.append(item.artifact_id)
            freed += item.bytes
    finally:
        audit = None
        if done:
            properties = {
                "action": action,
                "who": who,
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "artifacts": str(len(done)),
                "bytes_freed": str(freed),
                **details,
            }
            audit = store.record_action(ACTION_TYPE, properties, done, ACTION_KEY)
    return Result(done, freed, audit, round(time.monotonic() - started, 3))


def apply(store: MetadataStore, the_plan: Plan, who: str) -> Result:
    """Carry out a plan (see `delete_payloads`), auditing it as action 'gc' with its policy."""
    policy = the_plan.policy
    return delete_payloads(
        store,
        the_plan.deleted,
        pipeline_root=the_plan.pipeline_root,
        action="gc",
        who=who,
        details={
            "pipeline": the_plan.pipeline,
            "reason": f"retention: keep_last={policy.keep_last} keep_days={policy.keep_days:g}",
        },
    )
