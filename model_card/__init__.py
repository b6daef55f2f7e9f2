"""Model cards: one Markdown + HTML (+ JSON) page per pushed version, written at push time.

Everything measurable comes from ML Metadata (read through metadata/: MetadataStore and
metadata/model_facts.py) and the artifacts it points at (span, statistics, schema, hyperparameters,
overall and per-slice metrics, thresholds, baseline, lineage ids); the prose (intended use,
limitations) comes from the editable model_card/template.md. The files go under the version's
assets.extra/ (model_layout/), which TF Serving ignores, so the card travels with the model and
`mlops models card VERSION` reads it back. The Pusher (pipeline/push/pusher.py) writes it and the
registry reads it: it sits at the bottom, beside metadata/, so neither imports the other."""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import markdown

import model_layout as layout
from data_stats.missing import presence
from metadata import model_facts, payloads
from metadata.store import MetadataError, MetadataStore, open_store
from modules import baselines, dataset_spec, features, importance

TEMPLATE = Path(__file__).with_name("template.md")
_HEADLINE = ("auc", "binary_accuracy", "accuracy", "example_count")


def build(
    ms: MetadataStore,
    model_id: int,
    blessing_id: int | None,
    model_name: str,
    version: str,
    template: str | os.PathLike[str] = TEMPLATE,
) -> dict[str, Any]:
    """The card's content as JSON-ready data."""
    found = ms.artifacts_by_id([model_id, *([] if blessing_id is None else [blessing_id])])
    missing = [i for i in (model_id, blessing_id) if i is not None and i not in found]
    if missing:
        raise MetadataError(f"no artifact with id {missing[0]} in the metadata store")
    model = found[model_id]
    blessing = found[blessing_id] if blessing_id is not None else None
    card = model_facts.model_facts(ms, model, blessing)
    card.update({"model_name": model_name, "version": str(version)})
    # The features of the dataset the model was trained on (the default dataset's for models
    # trained before dataset specs).
    spec = card.pop("dataset", None)
    spec = dataset_spec.DatasetSpec.from_config(spec) if spec else features.SPEC
    card["features"] = {
        "label": spec.label,
        "raw": list(spec.raw_feature_keys),
        "slices": list(spec.slices),
    }
    lineage = card["lineage"]
    if "schema_uri" in lineage:
        card["schema"] = payloads.read_schema_summary(lineage["schema_uri"]) or {}
    if "statistics_uri" in lineage:
        card["statistics"] = statistics_summary(lineage["statistics_uri"])
    evaluation = card.get("evaluation") or {}
    if evaluation.get("evaluation_uri"):
        evaluation["slices"] = slice_metrics(evaluation["evaluation_uri"])
        comparison = baselines.read_comparison(evaluation["evaluation_uri"])
        if comparison:
            evaluation["comparison"] = comparison
        measured = importance.read_importance(evaluation["evaluation_uri"])
        if measured:
            evaluation["feature_importance"] = measured
    card["template"] = template_text(template)
    return card


_COMMENT = re.compile(r"<!--.*?-->\s*", re.S)


def template_text(template: str | os.PathLike[str] = TEMPLATE) -> str:
    """The template's prose without its HTML comments: the `<!-- Edit me ... -->` note is for
    whoever edits template.md, not for the card's readers (`mlops models card` prints the card
    as written)."""
    path = Path(template)
    return _COMMENT.sub("", path.read_text()).strip() + "\n" if path.is_file() else ""


def statistics_summary(uri: str) -> dict[str, Any]:
    """Per split: example count, and per feature the numbers a reader checks first."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    out: dict[str, Any] = {}
    for split_dir in sorted(Path(uri).glob("Split-*")):
        path = split_dir / "FeatureStats.pb"
        if not path.is_file():
            continue
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
        for dataset in stats.datasets[:1]:
            feats = {}
            for f in dataset.features:
                name = f.path.step[-1] if f.path.step else f.name
                if f.HasField("num_stats"):
                    n = f.num_stats
                    feats[name] = {
                        "mean": n.mean,
                        "std": n.std_dev,
                        "min": n.min,
                        "max": n.max,
                        "missing": presence(n.common_stats).missing,
                    }
                elif f.HasField("string_stats"):
                    s = f.string_stats
                    feats[name] = {"unique": s.unique, "missing": presence(s.common_stats).missing}
            out[split_dir.name[len("Split-") :]] = {
                "num_examples": dataset.num_examples,
                "features": feats,
            }
    return out


def slice_metrics(uri: str) -> list[dict[str, Any]]:
    """Scalar metrics per slice (the overall slice first), from TFMA's metrics output."""
    import tensorflow_model_analysis as tfma

    rows = []
    for mfs in tfma.load_metrics(uri):
        keys = [(k.column, _slice_value(k)) for k in mfs.slice_key.single_slice_keys]
        metrics = {}
        for kv in mfs.metric_keys_and_values:
            if (
                kv.value.HasField("double_value")
                and not kv.key.sub_key.ListFields()
                and not kv.key.is_diff
                and kv.key.model_name in ("", "candidate")
            ):
                metrics[kv.key.name] = kv.value.double_value.value
        rows.append({"slice": dict(keys), "metrics": dict(sorted(metrics.items()))})
    rows.sort(
        key=lambda r: (
            bool(r["slice"]),
            sorted(
                (k, (0, v, "") if isinstance(v, int | float) else (1, 0, str(v)))
                for k, v in r["slice"].items()
            ),
        )
    )
    return rows


def _slice_value(key) -> Any:
    kind = key.WhichOneof("kind")
    value = getattr(key, kind) if kind else None
    return value.decode() if isinstance(value, bytes) else value


# ---- rendering ---------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines + [""]


def comparison_markdown(comparison: dict[str, Any] | None) -> list[str]:
    """Why this model and not the run's baselines (modules/baselines.py): each model's headline
    metric on the eval rows and training seconds, the margin and the decision."""
    if not comparison:
        return []
    c = comparison
    seconds = c.get("train_seconds", {})
    lines = [f"## Candidate vs the run's baselines ({c['metric']}, {c['eval_rows']} eval rows)", ""]
    lines += _table(
        ["model", c["metric"], "train seconds", "exported"],
        [
            [name, c["scores"].get(name), seconds.get(name), "yes" if c["exported"] == name else ""]
            for name in (baselines.CANDIDATE, baselines.LINEAR, baselines.CONSTANT)
        ],
    )
    lines += [
        f"Margin over the linear baseline: {c['gain_over_linear']:+.4g} (needed more than "
        f"{c['required_gain']:.4g}: {c['margin_source']}). Decision: {c['decision']}.",
        "",
    ]
    return lines


def importance_markdown(measured: dict[str, Any] | None) -> list[str]:
    """What the model looks at (modules/importance.py): per raw feature, how much the headline
    metric drops on the eval rows when that feature's column is shuffled, most important first."""
    if not measured:
        return []
    m = measured
    worse = "falls" if m["higher_is_better"] else "rises"
    lines = [
        f"## Feature importance (permutation, {m['metric']}, {m['eval_rows']} eval rows)",
        "",
        f"How much {m['metric']} {worse} (from {m['score']:.4g}) when one feature's values are "
        f"shuffled across the eval rows; mean and standard deviation over {m['repeats']} "
        "seeded shuffles. About 0: the model does not use the feature.",
        "",
    ]
    lines += _table(
        ["feature", f"{m['metric']} drop", "std"],
        [[f["feature"], f["importance"], f["std"]] for f in m["features"]],
    )
    return lines


def to_markdown(card: dict[str, Any]) -> str:
    ev = card.get("evaluation") or {}
    lines = [f"# Model card: {card['model_name']} version {card['version']}", ""]
    lines += _table(
        ["", ""],
        [
            ["run", card.get("run", "")],
            ["data span", card.get("span")],
            ["blessed", ev.get("blessed")],
            ["baseline", (ev.get("baseline_model") or {}).get("id", "none (first blessed model)")],
            ["card written", card.get("written_at", "")],
        ],
    )
    lines += [card.get("template", "").strip(), ""] if card.get("template") else []
    lines += ["## Evaluation (overall)", ""]
    metrics, base, diff = ev.get("metrics", {}), ev.get("baseline_metrics", {}), ev.get("diff", {})
    names = [m for m in _HEADLINE if m in metrics] + sorted(set(metrics) - set(_HEADLINE))
    lines += _table(
        ["metric", "candidate", "baseline", "change"],
        [[m, metrics.get(m), base.get(m), diff.get(m)] for m in names],
    )
    lines += comparison_markdown(ev.get("comparison"))
    lines += importance_markdown(ev.get("feature_importance"))
    if ev.get("thresholds"):
        lines += ["### Thresholds (the Evaluator blesses only when all hold)", ""]
        lines += _table(
            ["metric", "lower bound", "upper bound", "change", "by at least"],
            [
                [
                    t["metric"],
                    t["lower_bound"],
                    t["upper_bound"],
                    t["change_direction"],
                    t["change_absolute"],
                ]
                for t in ev["thresholds"]
            ],
        )
    slices = [s for s in ev.get("slices", []) if s["slice"]]
    if slices:
        cols = [m for m in _HEADLINE if any(m in s["metrics"] for s in slices)]
        lines += ["## Evaluation per slice", ""]
        lines += _table(
            ["slice"] + cols,
            [
                [", ".join(f"{k}={v}" for k, v in s["slice"].items())]
                + [s["metrics"].get(c) for c in cols]
                for s in slices
            ],
        )
    stats = card.get("statistics") or {}
    if stats:
        lines += ["## Data statistics", ""]
        lines += _table(["split", "examples"], [[k, v["num_examples"]] for k, v in stats.items()])
        train = stats.get("train") or next(iter(stats.values()))
        lines += _table(
            ["feature (train)", "mean / unique", "std", "min", "max", "missing"],
            [
                [
                    name,
                    s.get("mean", s.get("unique")),
                    s.get("std"),
                    s.get("min"),
                    s.get("max"),
                    s.get("missing"),
                ]
                for name, s in sorted(train["features"].items())
            ],
        )
    if card.get("schema"):
        lines += ["## Schema", ""]
        lines += _table(["feature", "type and constraints"], sorted(card["schema"].items()))
    f = card.get("features", {})
    lines += [
        "## Features",
        "",
        f"Label: `{f.get('label')}`. Raw inputs: "
        + ", ".join(f"`{k}`" for k in f.get("raw", []))
        + ". Slices: "
        + ", ".join(f"`{k}`" for k in f.get("slices", []))
        + ".",
        "",
    ]
    if card.get("hyperparameters") or card.get("train_args"):
        lines += ["## Hyperparameters", ""]
        rows = [[k, v] for k, v in sorted((card.get("hyperparameters") or {}).items())]
        rows += [
            ["train_args", json.dumps(card.get("train_args"))],
            ["eval_args", json.dumps(card.get("eval_args"))],
        ]
        lines += _table(["name", "value"], rows)
    lines += ["## Lineage (ML Metadata ids)", ""]
    lin = {
        **card.get("lineage", {}),
        **{k: v for k, v in ev.items() if k in ("blessing", "evaluation", "evaluator_execution")},
    }
    lines += _table(["what", "id / uri"], sorted([k, v] for k, v in lin.items()))
    lines += [f"Trace it: `mlops lineage trace {card['version']}`", ""]
    return "\n".join(lines)


def to_html(markdown_text: str, title: str) -> str:

    body = markdown.markdown(markdown_text, extensions=["tables"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}</style>"
        f"</head><body>\n{body}\n</body></html>\n"
    )


def write(version_dir: str, card: dict[str, Any]) -> dict[str, str]:
    """Write card .md/.html/.json under assets.extra/, each file atomically; returns the paths."""
    card = {**card, "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    text = to_markdown(card)
    contents = {
        "md": text,
        "html": to_html(text, f"{card['model_name']} {card['version']}"),
        "json": json.dumps(card, indent=1, sort_keys=True, default=str),
    }
    paths = {}
    for ext, content in contents.items():
        path = layout.card_path(version_dir, ext)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{ext}-", dir=os.path.dirname(path))
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
        paths[ext] = path
    return paths


def write_at_push(
    metadata: str, version_dir: str, model_id: int, blessing_id: int | None, model_name: str
) -> dict[str, str]:
    """The Pusher's hook: build the card from MLMD and write it beside the pushed model."""
    card = build(
        open_store(metadata),
        model_id,
        blessing_id,
        model_name,
        os.path.basename(version_dir.rstrip(os.sep)),
    )
    return write(version_dir, card)
