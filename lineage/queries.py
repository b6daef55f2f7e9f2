"""The lineage questions users ask, answered as JSON-ready data (rendering lives in render.py).

* runs: what ran, when, what was reused from cache, and did it ship a model;
* artifacts: what exists, where, who made it;
* trace: everything upstream of a served model, down to the CSV files, plus the data checks and the
  evaluation that gated it;
* diff: what changed between two runs (data, schema, hyperparameters, metrics).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2

from metadata import payloads
from metadata.evaluation import read_evaluation
from metadata.records import ExecutionRecord
from metadata.store import (
    MetadataError,
    MetadataStore,
    event_key,
    is_input,
    is_output,
    iso_time,
    properties_of,
    state_name,
)

_MAX_HOPS = 40


def _artifact_json(
    ls: MetadataStore, artifact: mlmd_pb2.Artifact, producer: str = ""
) -> dict[str, Any]:
    return {
        "id": artifact.id,
        "type": ls.artifact_type(artifact),
        "uri": artifact.uri,
        "producer": producer,
        "created": iso_time(artifact.create_time_since_epoch),
        "state": mlmd_pb2.Artifact.State.Name(artifact.state).lower(),
        "properties": properties_of(artifact),
    }


def _execution_json(ls: MetadataStore, execution: mlmd_pb2.Execution) -> dict[str, Any]:
    return {
        "id": execution.id,
        "component": ls.component_name(execution),
        "type": ls.execution_type(execution),
        "state": state_name(execution),
        "run": ls.run_of_execution.get(execution.id, ""),
        "started": iso_time(execution.create_time_since_epoch),
        "properties": properties_of(execution),
    }


def _producer_names(ls: MetadataStore, artifact_ids: list[int]) -> dict[int, str]:
    producers = ls.producers(artifact_ids)
    executions = ls.executions_by_id(e for ids in producers.values() for e in ids[:1])
    return {
        a: ls.component_name(executions[ids[0]])
        for a, ids in producers.items()
        if ids[0] in executions
    }


# ---- runs ------------------------------------------------------------------------------------
def list_runs(
    ls: MetadataStore, limit: int | None = None, pipeline_name: str | None = None
) -> list[dict[str, Any]]:
    """Pipeline runs (of one pipeline, when given), newest first, with each component's state
    and whether a model was pushed."""
    out = []
    for run in ls.runs(pipeline_name, limit=limit):
        executions = sorted(run.executions, key=lambda e: e.id)
        components = [
            {"component": e.node_id, "state": e.state, "execution_id": e.id} for e in executions
        ]
        pushed = _pushed_in(ls, executions)
        out.append(
            {
                "run_id": run.run_id,
                "pipeline": run.pipeline,
                "start": iso_time(run.started_ms),
                "duration_s": run.duration_s,
                "status": run.status,
                "status_reason": run.status_reason,
                "components": components,
                "pushed": pushed is not None,
                "pushed_version": pushed.get("pushed_version") if pushed else None,
            }
        )
    return out


def _pushed_in(ls: MetadataStore, executions: list[ExecutionRecord]) -> dict[str, Any] | None:
    ids = [e.id for e in executions if e.state == "complete"]
    outputs = [ev.artifact_id for ev in ls.events_of_executions(ids) if is_output(ev)]
    for artifact in ls.artifacts_by_id(outputs).values():
        if ls.artifact_type(artifact) == "PushedModel":
            props = properties_of(artifact)
            if props.get("pushed") == 1:
                return props
    return None


# ---- artifacts -------------------------------------------------------------------------------
def list_artifacts(
    ls: MetadataStore,
    type_name: str | None = None,
    run: str | None = None,
    limit: int | None = None,
    pipeline_name: str | None = None,
) -> list[dict[str, Any]]:
    """Artifacts newest first, optionally of one type and/or attributed to one run (of one
    pipeline, when given)."""
    if run is not None:
        ctx = ls.resolve_run(run, pipeline_name)
        # Events rather than attributions: they say which of the run's executions made or used it.
        ids = [
            ev.artifact_id for ev in ls.events_of_executions([e.id for e in ls.run_executions(ctx)])
        ]
        artifacts = list(ls.artifacts_by_id(ids).values())
        if type_name is not None:
            ls.artifacts_of_type(type_name)  # validates the name with a helpful error
            artifacts = [a for a in artifacts if ls.artifact_type(a) == type_name]
    elif type_name is not None:
        artifacts = ls.artifacts_of_type(type_name)
    else:
        artifacts = list(ls.all_artifacts())
    artifacts.sort(key=lambda a: a.id, reverse=True)
    if limit:
        artifacts = artifacts[:limit]
    producers = _producer_names(ls, [a.id for a in artifacts])
    return [_artifact_json(ls, a, producers.get(a.id, "")) for a in artifacts]


# ---- trace -----------------------------------------------------------------------------------
def resolve_target(ls: MetadataStore, target: str) -> mlmd_pb2.Artifact:
    """'latest', a served version (number or path under serving_model/), or an artifact id."""
    target = target.strip()
    pushed = _pushed_models(ls)
    if target == "latest":
        live = [a for a in pushed if properties_of(a).get("pushed") == 1]
        if not live:
            raise MetadataError("no model has been pushed in this metadata store yet")
        return max(live, key=lambda a: (a.create_time_since_epoch, a.id))
    if target.isdigit():
        for artifact in pushed:
            if str(properties_of(artifact).get("pushed_version", "")) == target:
                return artifact
        found = ls.artifacts_by_id([int(target)])
        if found:
            return found[int(target)]
        raise MetadataError(
            f"no served model version {target} and no artifact with id {target}; "
            "see `mlops lineage artifacts --type PushedModel`"
        )
    path = os.path.normpath(os.path.abspath(target))
    for artifact in pushed:
        dest = properties_of(artifact).get("pushed_destination")
        if dest and os.path.normpath(os.path.abspath(str(dest))) == path:
            return artifact
    by_uri = [a for a in ls.artifacts_by_uri(path)] + [
        a for a in ls.artifacts_by_uri(target) if target != path
    ]
    if by_uri:
        return max(by_uri, key=lambda a: a.id)
    # A version directory that was copied or moved: fall back to the version number (its basename).
    base = os.path.basename(path)
    if base.isdigit():
        for artifact in pushed:
            if str(properties_of(artifact).get("pushed_version", "")) == base:
                return artifact
    raise MetadataError(
        f"unknown trace target {target!r}: not 'latest', a served model version or path, "
        "or an artifact id/URI in this store"
    )


def _pushed_models(ls: MetadataStore) -> list[mlmd_pb2.Artifact]:
    if "PushedModel" not in ls.artifact_types.values():
        return []
    return list(ls.artifacts_of_type("PushedModel"))


@dataclasses.dataclass
class Trace:
    """An upstream lineage graph rooted at one artifact, plus what the user wants named."""

    target: int
    artifacts: dict[int, dict[str, Any]]
    executions: dict[int, dict[str, Any]]
    # (execution_id, artifact_id, key, 'input'|'output')
    edges: list[tuple[int, int, str, str]]
    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.artifacts[self.target],
            "summary": self.summary,
            "artifacts": sorted(self.artifacts.values(), key=lambda a: a["id"]),
            "executions": sorted(self.executions.values(), key=lambda e: e["id"]),
            "edges": [
                {"execution": e, "artifact": a, "key": k, "direction": d}
                for e, a, k, d in self.edges
            ],
        }

    # helpers used by renderers
    def producer_of(self, artifact_id: int) -> int | None:
        """The execution that first made the artifact (later producers are cache hits)."""
        made = sorted(e for e, a, _, d in self.edges if a == artifact_id and d == "output")
        return made[0] if made else None

    def inputs_of(self, execution_id: int) -> list[tuple[str, int]]:
        return sorted(
            ((k, a) for e, a, k, d in self.edges if e == execution_id and d == "input"),
            key=lambda t: (t[0], t[1]),
        )

    def outputs_of(self, execution_id: int) -> list[tuple[str, int]]:
        return sorted(
            ((k, a) for e, a, k, d in self.edges if e == execution_id and d == "output"),
            key=lambda t: (t[0], t[1]),
        )


def trace(ls: MetadataStore, target: str) -> Trace:
    """Everything upstream of the target, with each step's sibling outputs and the data checks.

    The upstream subgraph alone misses what gated the model without feeding it: the evaluation
    metrics (a sibling of the blessing) and the anomalies found in the data (downstream of the
    statistics). Both are added so one trace answers "why was this model allowed to ship".
    """
    root = resolve_target(ls, target)
    graph = ls.lineage_subgraph([root.id], mlmd_pb2.LineageSubgraphQueryOptions.UPSTREAM, _MAX_HOPS)
    artifact_ids = {a.id for a in graph.artifacts} | {root.id}
    execution_ids = {e.id for e in graph.executions}

    # Drop cache-hit executions that only re-published an artifact: the first producer made it.
    events = ls.events_of_executions(sorted(execution_ids))
    first_producer: dict[int, int] = {}
    for ev in events:
        if is_output(ev) and ev.artifact_id in artifact_ids:
            first_producer[ev.artifact_id] = min(
                first_producer.get(ev.artifact_id, ev.execution_id), ev.execution_id
            )
    keep = set(first_producer.values())
    # Sibling outputs (metrics next to the blessing, tuner results next to hyperparameters).
    for ev in events:
        if ev.execution_id in keep and is_output(ev):
            artifact_ids.add(ev.artifact_id)

    # Data checks: statistics and anomalies computed from the raw examples in the chain.
    root_types = {a.id: a.type_id for a in graph.artifacts}
    examples_type = {i for i, name in ls.artifact_types.items() if name == "Examples"}
    raw_examples = [
        a_id
        for a_id, e_id in first_producer.items()
        if root_types.get(a_id) in examples_type
        and not any(is_input(ev) for ev in events if ev.execution_id == e_id)
    ]
    check_executions: set[int] = set()
    if raw_examples:
        # 6 hops: examples -> RowCleaner -> clean examples -> StatisticsGen -> statistics ->
        # ExampleValidator.
        down = ls.lineage_subgraph(raw_examples, mlmd_pb2.LineageSubgraphQueryOptions.DOWNSTREAM, 6)
        types = {t.id: t.name for t in down.execution_types}
        for execution in down.executions:
            name = types.get(execution.type_id, "")
            if name.endswith(("StatisticsGen", "ExampleValidator")):
                check_executions.add(execution.id)
    # Of the cache hits, keep only the original check executions too.
    check_first: dict[int, int] = {}
    for ev in ls.events_of_executions(sorted(check_executions)):
        if is_output(ev):
            check_first[ev.artifact_id] = min(
                check_first.get(ev.artifact_id, ev.execution_id), ev.execution_id
            )
    check_first = {a: e for a, e in check_first.items() if a not in first_producer}
    check_keep = set(check_first.values())
    keep |= check_keep
    artifact_ids |= set(check_first)

    all_events = [ev for ev in ls.events_of_executions(sorted(keep))]
    for ev in all_events:
        if is_input(ev) and ev.execution_id in check_keep:
            artifact_ids.add(ev.artifact_id)
    artifacts = ls.artifacts_by_id(artifact_ids)
    executions = ls.executions_by_id(keep)
    edges = sorted(
        {
            (ev.execution_id, ev.artifact_id, event_key(ev), "output" if is_output(ev) else "input")
            for ev in all_events
            if ev.artifact_id in artifacts and (is_output(ev) or is_input(ev))
        }
    )
    a_json = {}
    for a in artifacts.values():
        producer = first_producer.get(a.id) or check_first.get(a.id)
        a_json[a.id] = _artifact_json(
            ls, a, ls.component_name(executions[producer]) if producer in executions else ""
        )
    e_json = {e.id: _execution_json(ls, e) for e in executions.values()}
    result = Trace(root.id, a_json, e_json, edges, {})
    result.summary = _summarize(ls, result)
    result.summary["later_actions"] = _later_actions(ls, root.id)
    return result


def _later_actions(ls: MetadataStore, artifact_id: int) -> list[dict[str, Any]]:
    """Executions outside any pipeline run that took the target as input, oldest first: e.g. the
    registry's promote / rollback / retire records (registry/store.py) of a PushedModel."""
    ids = sorted({ev.execution_id for ev in ls.events_of_artifacts([artifact_id]) if is_input(ev)})
    return [
        {
            "id": e.id,
            "type": ls.execution_type(e),
            "when": iso_time(e.create_time_since_epoch),
            "properties": properties_of(e),
        }
        for e in sorted(ls.executions_by_id(ids).values(), key=lambda e: e.id)
        if e.id not in ls.run_of_execution
    ]


def _summarize(ls: MetadataStore, t: Trace) -> dict[str, Any]:
    """The answer to "what produced this model", picked out of the graph."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for a in sorted(t.artifacts.values(), key=lambda a: a["id"]):
        by_type.setdefault(a["type"], []).append(a)
    summary: dict[str, Any] = {
        "target": {k: t.artifacts[t.target][k] for k in ("id", "type", "uri")}
    }
    target_props = t.artifacts[t.target]["properties"]
    if t.artifacts[t.target]["type"] == "PushedModel":
        summary["pushed"] = {
            "pushed": target_props.get("pushed") == 1,
            "version": target_props.get("pushed_version"),
            "destination": target_props.get("pushed_destination"),
        }
    summary["inputs"] = _input_files(t)
    model = _served_model(t, by_type)
    trainer = t.producer_of(model["id"]) if model else None
    if trainer is not None:
        summary.update(_training(t, model, trainer))
    summary["evaluation"] = _blessings(t, by_type)
    summary["data_checks"] = _data_checks(t, by_type)
    return summary


def _input_files(t: Trace) -> list[dict[str, Any]]:
    """The Examples of every ingest execution in the graph, with the files they were read from."""
    inputs = []
    for e in t.executions.values():
        props = e["properties"]
        if t.inputs_of(e["id"]) or "input_base" not in props:
            continue
        for _key, a_id in t.outputs_of(e["id"]):
            a = t.artifacts.get(a_id)
            if not a or a["type"] != "Examples":
                continue
            a_props = a["properties"]
            splits = (props.get("input_config") or {}).get("splits", [])
            patterns = [s.get("pattern", "*") for s in splits] or ["*"]
            inputs.append(
                {
                    "examples_id": a_id,
                    "component": e["component"],
                    "input_base": props["input_base"],
                    "files": payloads.expand_input_files(
                        props["input_base"], patterns, a_props.get("span")
                    ),
                    "span": a_props.get("span"),
                    "version": a_props.get("version"),
                    "fingerprint": a_props.get("input_fingerprint")
                    or props.get("input_fingerprint"),
                }
            )
    return inputs


def _training(t: Trace, model: dict[str, Any], trainer: int) -> dict[str, Any]:
    """The model, the schema it was trained against and the hyperparameters it was trained with."""
    inputs_by_key: dict[str, list[int]] = {}
    for key, a_id in t.inputs_of(trainer):
        inputs_by_key.setdefault(key, []).append(a_id)
    schema = []
    for a_id in inputs_by_key.get("schema", []):
        producer = t.producer_of(a_id)
        source = t.executions[producer]["properties"].get("schema_file") if producer else None
        schema.append(
            {
                "id": a_id,
                "uri": t.artifacts[a_id]["uri"],
                "producer": t.artifacts[a_id]["producer"],
                "source_file": source,
            }
        )
    tprops = t.executions[trainer]["properties"]
    hp: dict[str, Any] = {
        k: tprops[k]
        for k in ("train_args", "eval_args", "custom_config")
        if tprops.get(k) not in (None, "null", {})
    }
    for a_id in inputs_by_key.get("hyperparameters", []):
        hp["tuned"] = payloads.read_hyperparameters(t.artifacts[a_id]["uri"])
        hp["hyperparameters_artifact"] = a_id
        hp["hyperparameters_source"] = t.artifacts[a_id]["producer"]
    return {
        "model": {"id": model["id"], "uri": model["uri"], "trainer_execution": trainer},
        "schema": schema,
        "hyperparameters": hp,
    }


def _blessings(t: Trace, by_type: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each blessing in the graph with the evaluation's metrics and the baseline it beat."""
    blessings = []
    for b in by_type.get("ModelBlessing", []):
        evaluator = t.producer_of(b["id"])
        baseline = None
        metrics: dict[str, float] = {}
        evaluation_id = None
        if evaluator is not None:
            for key, a_id in t.inputs_of(evaluator):
                if key == "baseline_model":
                    baseline = {"id": a_id, "uri": t.artifacts[a_id]["uri"]}
            for _key, a_id in t.outputs_of(evaluator):
                if t.artifacts[a_id]["type"] == "ModelEvaluation":
                    evaluation_id = a_id
                    metrics = read_evaluation(t.artifacts[a_id]["uri"]).metrics()
        blessings.append(
            {
                "blessing_id": b["id"],
                "blessed": b["properties"].get("blessed") == 1,
                "evaluation_id": evaluation_id,
                "metrics": metrics,
                "baseline_model": baseline,
            }
        )
    return blessings


def _data_checks(t: Trace, by_type: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """StatisticsGen's statistics in the graph and what ExampleValidator found in them."""
    checks = []
    for stats in by_type.get("ExampleStatistics", []):
        producer = t.producer_of(stats["id"])
        if producer is None or not t.executions[producer]["type"].endswith("StatisticsGen"):
            continue
        anomalies = []
        for e in t.executions.values():
            if not e["type"].endswith("ExampleValidator"):
                continue
            if stats["id"] not in [a for _, a in t.inputs_of(e["id"])]:
                continue
            for _key, a_id in t.outputs_of(e["id"]):
                a = t.artifacts[a_id]
                blessed = a["properties"].get("blessed") or {}
                anomalies.append(
                    {
                        "id": a_id,
                        "uri": a["uri"],
                        "clean_splits": sorted(k for k, v in blessed.items() if v == 1),
                        "anomalous_splits": sorted(k for k, v in blessed.items() if v != 1),
                    }
                )
        checks.append(
            {"statistics_id": stats["id"], "statistics_uri": stats["uri"], "anomalies": anomalies}
        )
    return checks


def _served_model(t: Trace, by_type: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The model the target is about; baselines are in the graph too, so "any Model" is wrong."""
    target = t.artifacts[t.target]
    if target["type"] == "Model":
        return target
    pusher = t.producer_of(t.target)
    if pusher is not None:
        for _key, a_id in t.inputs_of(pusher):
            if t.artifacts[a_id]["type"] == "Model":
                return t.artifacts[a_id]
    baselines = {a for e in t.executions for k, a in t.inputs_of(e) if k == "baseline_model"}
    candidates = [a for a in by_type.get("Model", []) if a["id"] not in baselines]
    return candidates[-1] if candidates else None


# ---- diff ------------------------------------------------------------------------------------
def run_facts(ls: MetadataStore, run_ref: str, pipeline_name: str | None = None) -> dict[str, Any]:
    """The comparable facts of one run (of one pipeline, when given): inputs, schema,
    hyperparameters, metrics, outcome."""
    run = ls.resolve_run(run_ref, pipeline_name)
    executions = ls.run_executions(run)
    by_component = {ls.component_name(e): e for e in executions}
    events = ls.events_of_executions([e.id for e in executions])
    artifacts = ls.artifacts_by_id(ev.artifact_id for ev in events)
    facts: dict[str, Any] = {
        "run_id": run.name,
        "components": {c: state_name(e) for c, e in by_component.items()},
        "input": {},
        "schema": {},
        "hyperparameters": {},
        "metrics": {},
        "outcome": {},
    }
    for e in executions:
        props = properties_of(e)
        outs = [
            artifacts[ev.artifact_id] for ev in events if ev.execution_id == e.id and is_output(ev)
        ]
        ins = [
            (event_key(ev), artifacts[ev.artifact_id])
            for ev in events
            if ev.execution_id == e.id and is_input(ev)
        ]
        comp = ls.component_name(e)
        if "input_base" in props and not ins:
            for a in outs:
                if ls.artifact_type(a) == "Examples":
                    ap = properties_of(a)
                    facts["input"][f"{comp}.span"] = ap.get("span")
                    facts["input"][f"{comp}.version"] = ap.get("version")
                    facts["input"][f"{comp}.fingerprint"] = ap.get("input_fingerprint")
                    facts["input"][f"{comp}.examples_artifact"] = a.id
        if any(ls.artifact_type(a) == "Model" for a in outs):
            for key in ("train_args", "eval_args", "custom_config"):
                value = props.get(key)
                if isinstance(value, dict):
                    for k, v in _flatten(value).items():
                        facts["hyperparameters"][f"{comp}.{key}.{k}"] = v
                elif value not in (None, "null", ""):
                    facts["hyperparameters"][f"{comp}.{key}"] = value
            for key, a in ins:
                kind = ls.artifact_type(a)
                if kind == "HyperParameters":
                    for k, v in (payloads.read_hyperparameters(a.uri) or {}).items():
                        facts["hyperparameters"][k] = v
                    facts["hyperparameters"]["(artifact)"] = a.id
                elif kind == "Schema" and key == "schema":
                    facts["schema"]["(artifact)"] = a.id
                    facts["schema"]["(uri)"] = a.uri
                    for k, v in (payloads.read_schema_summary(a.uri) or {}).items():
                        facts["schema"][k] = v
        for a in outs:
            kind = ls.artifact_type(a)
            ap = properties_of(a)
            if kind == "ModelEvaluation":
                # The candidate's own metrics; baseline:/diff: values depend on the baseline chosen.
                facts["metrics"].update(
                    (k, v)
                    for k, v in read_evaluation(a.uri).metrics().items()
                    if not k.startswith(("baseline:", "diff:"))
                )
            elif kind == "ModelBlessing":
                facts["outcome"]["blessed"] = ap.get("blessed") == 1
            elif kind == "PushedModel":
                facts["outcome"]["pushed"] = ap.get("pushed") == 1
                facts["outcome"]["pushed_version"] = ap.get("pushed_version")
            elif kind == "Model":
                facts["outcome"]["model_artifact"] = a.id
    return facts


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


DIFF_SECTIONS = ("input", "schema", "hyperparameters", "metrics", "outcome", "components")


def diff_runs(
    ls: MetadataStore, run_a: str, run_b: str, pipeline_name: str | None = None
) -> dict[str, Any]:
    """Per-section changes between two runs; unchanged keys are counted, not listed."""
    a = run_facts(ls, run_a, pipeline_name)
    b = run_facts(ls, run_b, pipeline_name)
    sections: dict[str, Any] = {}
    for section in DIFF_SECTIONS:
        left, right = a[section], b[section]
        changes = [
            {"key": k, "a": left.get(k), "b": right.get(k)}
            for k in sorted(set(left) | set(right))
            if left.get(k) != right.get(k)
        ]
        sections[section] = {
            "changed": changes,
            "unchanged": len(set(left) | set(right)) - len(changes),
        }
    return {"run_a": a["run_id"], "run_b": b["run_id"], "sections": sections}
