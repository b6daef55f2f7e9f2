"""What ML Metadata knows about one pushed model: run, span, evaluation, baseline, lineage ids.

`mlops models list` and the model card both read these facts; the card adds the heavier parts
(statistics, schema, per-slice metrics) in registry/card.py. Artifact payloads are read with
metadata/'s TensorFlow-free readers so listing stays interactive.
"""

from __future__ import annotations

import json
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as mlmd

from metadata import payloads
from metadata.evaluation import read_evaluation
from metadata.store import CLEANED_EXAMPLES
from registry.store import RegistryStore, props


def _one(linked: dict[str, list[mlmd.Artifact]], key: str) -> mlmd.Artifact | None:
    found = linked.get(key) or []
    return found[0] if found else None


def model_facts(
    rs: RegistryStore, model: mlmd.Artifact, blessing: mlmd.Artifact | None
) -> dict[str, Any]:
    """Facts about a trained model and the evaluation that gated it (ids are MLMD ids)."""
    facts: dict[str, Any] = {"lineage": {"model": model.id, "model_uri": model.uri}}
    trainer = rs.producer(model.id)
    if trainer is not None:
        facts["lineage"]["trainer_execution"] = trainer.id
        facts["run"] = rs.run_of(trainer.id)
        tprops = props(trainer)
        facts["train_args"] = _json(tprops.get("train_args"))
        facts["eval_args"] = _json(tprops.get("eval_args"))
        inputs = rs.inputs(trainer.id)
        hp = _one(inputs, "hyperparameters")
        if hp is not None:
            facts["lineage"]["hyperparameters"] = hp.id
            facts["hyperparameters"] = payloads.read_hyperparameters(hp.uri) or {}
        schema = _one(inputs, "schema")
        if schema is not None:
            facts["lineage"]["schema"] = schema.id
            facts["lineage"]["schema_uri"] = schema.uri
    examples = _raw_examples(rs, model.id)
    if examples is not None:
        facts["span"] = props(examples).get("span")
        facts["lineage"]["examples"] = examples.id
        facts["lineage"]["examples_uri"] = examples.uri
        stats = _statistics_of(rs, examples.id)
        if stats is not None:
            facts["lineage"]["statistics"] = stats.id
            facts["lineage"]["statistics_uri"] = stats.uri
    facts["evaluation"] = evaluation_facts(rs, blessing) if blessing is not None else {}
    return facts


def evaluation_facts(rs: RegistryStore, blessing: mlmd.Artifact) -> dict[str, Any]:
    """Blessed or not, the overall metrics, the thresholds and the baseline it was compared with."""
    out: dict[str, Any] = {"blessing": blessing.id, "blessed": props(blessing).get("blessed") == 1}
    evaluator = rs.producer(blessing.id)
    if evaluator is None:
        return out
    out["evaluator_execution"] = evaluator.id
    evaluation = _one(rs.outputs(evaluator.id), "evaluation")
    if evaluation is not None:
        out["evaluation"] = evaluation.id
        out["evaluation_uri"] = evaluation.uri
        metrics = read_evaluation(evaluation.uri).metrics()
        out["metrics"] = {k: v for k, v in metrics.items() if ":" not in k}
        out["baseline_metrics"] = {
            k.split(":", 1)[1]: v for k, v in metrics.items() if k.startswith("baseline:")
        }
        out["diff"] = {k.split(":", 1)[1]: v for k, v in metrics.items() if k.startswith("diff:")}
    baseline = _one(rs.inputs(evaluator.id), "baseline_model")
    out["baseline_model"] = {"id": baseline.id, "uri": baseline.uri} if baseline else None
    out["thresholds"] = thresholds(_json(props(evaluator).get("eval_config")))
    return out


def thresholds(eval_config: Any) -> list[dict[str, Any]]:
    """The metric thresholds of a TFMA EvalConfig (as JSON), one row per metric."""
    rows = []
    if not isinstance(eval_config, dict):
        return rows
    for spec in eval_config.get("metrics_specs", eval_config.get("metricsSpecs", [])):
        for metric in spec.get("metrics", []):
            per_slice = metric.get("per_slice_thresholds", metric.get("perSliceThresholds", []))
            found = [metric.get("threshold")] + [p.get("threshold") for p in per_slice]
            for t in filter(None, found):
                value = t.get("value_threshold") or t.get("valueThreshold") or {}
                change = t.get("change_threshold") or t.get("changeThreshold") or {}
                if not value and not change:
                    continue
                rows.append(
                    {
                        "metric": metric.get("class_name") or metric.get("className"),
                        "lower_bound": _bound(value, "lower_bound", "lowerBound"),
                        "upper_bound": _bound(value, "upper_bound", "upperBound"),
                        "change_direction": change.get("direction"),
                        "change_absolute": _bound(change, "absolute", "absolute"),
                    }
                )
    return rows


def _bound(d: dict[str, Any], snake: str, camel: str) -> float | None:
    v = d.get(snake, d.get(camel))
    if isinstance(v, dict):
        v = v.get("value")
    return float(v) if v is not None else None


def _statistics_of(rs: RegistryStore, examples_id: int) -> mlmd.Artifact | None:
    """StatisticsGen's output on these examples, or on the RowCleaner's clean rows of them."""
    cleaned = []
    for execution in rs.downstream_executions(examples_id):
        if rs.execution_type(execution).endswith("StatisticsGen"):
            stats = _one(rs.outputs(execution.id), "statistics")
            if stats is not None:
                return stats
        cleaned += rs.outputs(execution.id).get(CLEANED_EXAMPLES, [])
    for artifact in cleaned:
        stats = _statistics_of(rs, artifact.id)
        if stats is not None:
            return stats
    return None


def _raw_examples(rs: RegistryStore, model_id: int) -> mlmd.Artifact | None:
    """The ExampleGen output the model was trained on (an Examples artifact nobody derived)."""
    graph = rs.upstream(model_id)
    types = {t.id: t.name for t in graph.artifact_types}
    derived = set()
    produced_by = {}
    for event in graph.events:
        if event.type in (mlmd.Event.OUTPUT, mlmd.Event.DECLARED_OUTPUT):
            produced_by.setdefault(event.artifact_id, event.execution_id)
    has_inputs = {
        e.execution_id
        for e in graph.events
        if e.type in (mlmd.Event.INPUT, mlmd.Event.DECLARED_INPUT)
    }
    for artifact_id, execution_id in produced_by.items():
        if execution_id in has_inputs:
            derived.add(artifact_id)
    raw = [a for a in graph.artifacts if types.get(a.type_id) == "Examples" and a.id not in derived]
    return max(raw, key=lambda a: a.id) if raw else None


def pushed_facts(rs: RegistryStore, pushed: mlmd.Artifact) -> dict[str, Any]:
    """model_facts for a PushedModel, through the Pusher execution's inputs."""
    pusher = rs.producer(pushed.id)
    if pusher is None:
        return {"lineage": {"pushed_model": pushed.id}}
    inputs = rs.inputs(pusher.id)
    model = _one(inputs, "model")
    if model is None:
        return {"lineage": {"pushed_model": pushed.id}}
    facts = model_facts(rs, model, _one(inputs, "model_blessing"))
    facts["lineage"]["pushed_model"] = pushed.id
    facts["lineage"]["pusher_execution"] = pusher.id
    facts["run"] = rs.run_of(pusher.id) or facts.get("run", "")
    return facts


def _json(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
