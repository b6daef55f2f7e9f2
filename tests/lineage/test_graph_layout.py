"""The lineage picture reads at normal size: top-down layers, artifacts passed between
components summarised on the edges. A trace shaped like the taxi pipeline's (every component,
its artifacts, a baseline model from an earlier run), drawn by Graphviz and by the built-in
layout; the left-to-right drawing of every artifact was 4170x258 px."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from lineage import graph
from lineage.queries import Trace

# component -> (inputs, outputs), as artifact names; the Pusher's output is the target.
PIPELINE = {
    "CsvExampleGen": ([], ["examples"]),
    "ImportSchemaGen": ([], ["schema"]),
    "RowCleaner": (["examples", "schema"], ["cleaned_examples", "quarantine"]),
    "StatisticsGen": (["cleaned_examples"], ["statistics"]),
    "ExampleValidator": (["statistics", "schema"], ["anomalies"]),
    "DriftValidator": (["statistics", "schema"], ["drift"]),
    "DataGate": (["anomalies", "drift", "quarantine"], ["gate"]),
    "Transform": (["cleaned_examples", "schema", "gate"], ["transform_graph", "transformed"]),
    "Tuner": (["transformed", "transform_graph", "schema"], ["best_hyperparameters"]),
    "Trainer": (
        ["transformed", "transform_graph", "best_hyperparameters", "schema"],
        ["model", "model_run"],
    ),
    "LatestBlessedModelResolver": (["baseline_model"], ["baseline"]),
    "Evaluator": (["model", "cleaned_examples", "baseline"], ["evaluation", "blessing"]),
    "Pusher": (["model", "blessing"], ["pushed_model"]),
}


def taxi_like_trace() -> Trace:
    ids = {}
    artifacts, executions, edges = {}, {}, []
    for outs in [o for _, o in PIPELINE.values()] + [["baseline_model"]]:
        for name in outs:
            ids.setdefault(name, len(ids) + 1)
    for name, a_id in ids.items():
        artifacts[a_id] = {
            "id": a_id,
            "type": name.title().replace("_", ""),
            "uri": f"/out/taxi_pipeline/{name}/{a_id}",
            "properties": {"span": 1} if "examples" in name else {},
        }
    for e_id, (component, (ins, outs)) in enumerate(PIPELINE.items(), start=1):
        executions[e_id] = {"id": e_id, "component": component, "state": "complete"}
        edges += [(e_id, ids[n], n, "input") for n in ins]
        edges += [(e_id, ids[n], n, "output") for n in outs]
    summary = {
        "inputs": [
            {"examples_id": ids["examples"], "span": 1, "files": ["/data/taxi/span-1/data.csv"]}
        ]
    }
    return Trace(ids["pushed_model"], artifacts, executions, edges, summary)


def test_collapsed_graph_has_about_one_node_per_component():
    t = taxi_like_trace()
    nodes, edges = graph.build(t)
    kinds = [n.kind for n in nodes]
    assert kinds.count("execution") == len(PIPELINE)
    # The target, the input file and the baseline model (made by no execution in the trace).
    assert kinds.count("artifact") == 2 and kinds.count("file") == 1
    # Resolver -> Evaluator carries the baseline as the edge's label.
    assert [label for src, dst, label in edges if (src, dst) == ("e11", "e12")] == [
        "baseline: Baseline #14"
    ]
    full_nodes, _ = graph.build(t, collapse=False)
    assert len(full_nodes) == len(t.artifacts) + len(PIPELINE) + 1
    dot = graph.to_dot(t)
    assert "rankdir=TB" in dot and "CsvExampleGen" in dot and "PushedModel" in dot


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param(
            "graphviz",
            marks=pytest.mark.skipif(not shutil.which("dot"), reason="Graphviz not installed"),
        ),
        "builtin",
    ],
)
def test_picture_is_bounded_at_normal_size(tmp_path, engine):
    out = tmp_path / "lineage.png"
    assert graph.write(taxi_like_trace(), str(out), engine=engine) == engine
    with Image.open(out) as image:
        width, height = image.size
    print(f"{engine}: {width}x{height} px")
    assert width <= 1600 and height <= 2000, (width, height)
    assert 0.3 <= width / height <= 2.5, (width, height)
