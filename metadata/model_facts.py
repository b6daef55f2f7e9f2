"""What ML Metadata knows about one pushed model: run, span, evaluation, baseline, lineage ids.

`mlops models list` and the model card both read these facts; the card adds the heavier parts
(statistics, schema, per-slice metrics) in model_card/. Everything is read through MetadataStore,
and artifact payloads with metadata/'s TensorFlow-free readers, so listing stays interactive.
"""

from __future__ import annotations

from typing import Any

from ml_metadata.proto import metadata_store_pb2 as mlmd

from metadata import payloads
from metadata.evaluation import read_evaluation
from metadata.store import (
    CLEANED_EXAMPLES,
    MetadataStore,
    is_input,
    is_output,
    properties_of,
)

_UPSTREAM_HOPS = 20  # Model <- Trainer <- Transform <- ... <- ExampleGen, with room to spare


def _one(linked: dict[str, list[mlmd.Artifact]], key: str) -> mlmd.Artifact | None:
    found = linked.get(key) or []
    return found[0] if found else None


def model_facts(
    ms: MetadataStore, model: mlmd.Artifact, blessing: mlmd.Artifact | None
) -> dict[str, Any]:
    """Facts about a trained model and the evaluation that gated it (ids are MLMD ids)."""
    facts: dict[str, Any] = {"lineage": {"model": model.id, "model_uri": model.uri}}
    trainer = ms.producer(model.id)
    if trainer is not None:
        facts["lineage"]["trainer_execution"] = trainer.id
        facts["run"] = ms.run_of(trainer.id)
        tprops = properties_of(trainer)
        facts["train_args"] = tprops.get("train_args")
        facts["eval_args"] = tprops.get("eval_args")
        # The dataset spec the Trainer was given (modules/dataset_spec.py), when it was.
        custom = tprops.get("custom_config")
        if isinstance(custom, dict) and isinstance(custom.get("dataset"), dict):
            facts["dataset"] = custom["dataset"]
        inputs = ms.inputs(trainer.id)
        hp = _one(inputs, "hyperparameters")
        if hp is not None:
            facts["lineage"]["hyperparameters"] = hp.id
            facts["hyperparameters"] = payloads.read_hyperparameters(hp.uri) or {}
        schema = _one(inputs, "schema")
        if schema is not None:
            facts["lineage"]["schema"] = schema.id
            facts["lineage"]["schema_uri"] = schema.uri
    examples = _raw_examples(ms, model.id)
    if examples is not None:
        facts["span"] = properties_of(examples).get("span")
        facts["lineage"]["examples"] = examples.id
        facts["lineage"]["examples_uri"] = examples.uri
        stats = _statistics_of(ms, examples.id)
        if stats is not None:
            facts["lineage"]["statistics"] = stats.id
            facts["lineage"]["statistics_uri"] = stats.uri
    facts["evaluation"] = evaluation_facts(ms, blessing) if blessing is not None else {}
    return facts


def evaluation_facts(ms: MetadataStore, blessing: mlmd.Artifact) -> dict[str, Any]:
    """Blessed or not, the overall metrics, the thresholds and the baseline it was compared with."""
    out: dict[str, Any] = {
        "blessing": blessing.id,
        "blessed": properties_of(blessing).get("blessed") == 1,
    }
    evaluator = ms.producer(blessing.id)
    if evaluator is None:
        return out
    out["evaluator_execution"] = evaluator.id
    evaluation = _one(ms.outputs(evaluator.id), "evaluation")
    if evaluation is not None:
        out["evaluation"] = evaluation.id
        out["evaluation_uri"] = evaluation.uri
        metrics = read_evaluation(evaluation.uri).metrics()
        out["metrics"] = {k: v for k, v in metrics.items() if ":" not in k}
        out["baseline_metrics"] = {
            k.split(":", 1)[1]: v for k, v in metrics.items() if k.startswith("baseline:")
        }
        out["diff"] = {k.split(":", 1)[1]: v for k, v in metrics.items() if k.startswith("diff:")}
    baseline = _one(ms.inputs(evaluator.id), "baseline_model")
    out["baseline_model"] = {"id": baseline.id, "uri": baseline.uri} if baseline else None
    out["thresholds"] = thresholds(properties_of(evaluator).get("eval_config"))
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


def _statistics_of(ms: MetadataStore, examples_id: int) -> mlmd.Artifact | None:
    """StatisticsGen's output on these examples, or on the RowCleaner's clean rows of them."""
    cleaned = []
    for execution in ms.consumers(examples_id):
        if ms.execution_type(execution).endswith("StatisticsGen"):
            stats = _one(ms.outputs(execution.id), "statistics")
            if stats is not None:
                return stats
        cleaned += ms.outputs(execution.id).get(CLEANED_EXAMPLES, [])
    for artifact in cleaned:
        stats = _statistics_of(ms, artifact.id)
        if stats is not None:
            return stats
    return None


def _raw_examples(ms: MetadataStore, model_id: int) -> mlmd.Artifact | None:
    """The ExampleGen output the model was trained on (an Examples artifact nobody derived)."""
    graph = ms.lineage_subgraph(
        [model_id], mlmd.LineageSubgraphQueryOptions.UPSTREAM, _UPSTREAM_HOPS
    )
    types = {t.id: t.name for t in graph.artifact_types}
    produced_by: dict[int, int] = {}
    for event in graph.events:
        if is_output(event):
            produced_by.setdefault(event.artifact_id, event.execution_id)
    has_inputs = {e.execution_id for e in graph.events if is_input(e)}
    derived = {a for a, execution in produced_by.items() if execution in has_inputs}
    raw = [a for a in graph.artifacts if types.get(a.type_id) == "Examples" and a.id not in derived]
    return max(raw, key=lambda a: a.id) if raw else None


def pushed_facts(ms: MetadataStore, pushed_id: int) -> dict[str, Any]:
    """model_facts for a PushedModel (by artifact id), through the Pusher execution's inputs."""
    pusher = ms.producer(pushed_id)
    if pusher is None:
        return {"lineage": {"pushed_model": pushed_id}}
    inputs = ms.inputs(pusher.id)
    model = _one(inputs, "model")
    if model is None:
        return {"lineage": {"pushed_model": pushed_id}}
    facts = model_facts(ms, model, _one(inputs, "model_blessing"))
    facts["lineage"]["pushed_model"] = pushed_id
    facts["lineage"]["pusher_execution"] = pusher.id
    facts["run"] = ms.run_of(pusher.id) or facts.get("run", "")
    return facts
