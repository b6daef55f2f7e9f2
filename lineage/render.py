"""Plain-text rendering of lineage answers, for people; --json bypasses this for scripts."""

from __future__ import annotations

from typing import Any

from lineage.queries import Trace

_KEY_PROPS = ("span", "version", "blessed", "pushed", "pushed_version")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def runs(data: list[dict[str, Any]]) -> str:
    if not data:
        return "no pipeline runs recorded"
    rows = []
    for run in data:
        states: dict[str, list[str]] = {}
        for c in run["components"]:
            states.setdefault(c["state"], []).append(c["component"])
        parts = []
        for state in ("failed", "running", "complete", "cached", "new", "canceled", "unknown"):
            if state in states:
                names = states[state]
                parts.append(f"{state}: {', '.join(names)}")
        pushed = f"yes (v{run['pushed_version']})" if run["pushed"] else "no"
        rows.append(
            [
                run["run_id"],
                run["start"],
                f"{run['duration_s']:.1f}s",
                run["status"] + (" (process gone)" if run.get("status_reason") else ""),
                pushed,
                "; ".join(parts),
            ]
        )
    return table(rows, ["RUN", "START", "DURATION", "STATUS", "PUSHED", "COMPONENTS"])


def artifacts(data: list[dict[str, Any]]) -> str:
    if not data:
        return "no artifacts match"
    rows = []
    for a in data:
        props = a["properties"]
        shown = [f"{k}={_short(props[k], 30)}" for k in _KEY_PROPS if k in props]
        if "input_fingerprint" in props:
            shown.append(f"fingerprint={_short(props['input_fingerprint'], 40)}")
        rows.append([str(a["id"]), a["type"], a["producer"] or "-", " ".join(shown), a["uri"]])
    return table(rows, ["ID", "TYPE", "PRODUCER", "PROPERTIES", "URI"])


def _artifact_line(a: dict[str, Any]) -> str:
    props = a["properties"]
    shown = [f"{k}={props[k]}" for k in _KEY_PROPS if k in props]
    extra = f" [{', '.join(shown)}]" if shown else ""
    return f"{a['type']} #{a['id']}{extra}  {a['uri']}"


def _exec_line(e: dict[str, Any]) -> str:
    run = f", run {e['run']}" if e["run"] else ""
    return f"{e['component']} (execution #{e['id']}, {e['state']}{run})"


def trace(t: Trace) -> str:
    """An indented upstream tree from the target, then a summary that answers the question."""
    lines: list[str] = []
    seen: set[int] = set()
    seen_exec: set[int] = set()

    def walk_artifact(a_id: int, depth: int, label: str) -> None:
        a = t.artifacts[a_id]
        pad = "  " * depth
        prefix = f"{label}: " if label else ""
        if a_id in seen:
            lines.append(f"{pad}{prefix}{a['type']} #{a_id} (see above)")
            return
        seen.add(a_id)
        lines.append(f"{pad}{prefix}{_artifact_line(a)}")
        producer = t.producer_of(a_id)
        if producer is None:
            return
        e = t.executions[producer]
        if producer in seen_exec:
            lines.append(f"{pad}  <- {e['component']} (execution #{producer}, see above)")
            return
        seen_exec.add(producer)
        lines.append(f"{pad}  <- {_exec_line(e)}")
        if "input_base" in e["properties"] and not t.inputs_of(producer):
            for item in t.summary.get("inputs", []):
                if item["examples_id"] == a_id:
                    for f in item["files"]:
                        lines.append(f"{pad}       input file: {f}")
                    lines.append(
                        f"{pad}       span {item['span']}, fingerprint {item['fingerprint']}"
                    )
        for key, child in t.inputs_of(producer):
            walk_artifact(child, depth + 2, key)

    walk_artifact(t.target, 0, "")
    lines.append("")
    lines.append(summary(t.summary))
    return "\n".join(lines)


def summary(s: dict[str, Any]) -> str:
    lines = ["Summary"]
    if "pushed" in s:
        p = s["pushed"]
        state = "pushed" if p["pushed"] else "NOT pushed"
        lines.append(f"  served:     {state}, version {p['version']} at {p['destination']}")
    if "model" in s:
        lines.append(f"  model:      Model #{s['model']['id']}  {s['model']['uri']}")
    for item in s.get("inputs", []):
        files = ", ".join(item["files"])
        lines.append(f"  data:       {files} (span {item['span']}, via {item['component']})")
        lines.append(f"              fingerprint {item['fingerprint']}")
    for schema in s.get("schema", []):
        lines.append(
            f"  schema:     Schema #{schema['id']} from {schema['producer']}  {schema['uri']}"
        )
        if schema.get("source_file"):
            lines.append(f"              imported from {schema['source_file']}")
    hp = s.get("hyperparameters")
    if hp:
        if "tuned" in hp:
            lines.append(
                f"  hparams:    {hp.get('tuned')} "
                f"(HyperParameters #{hp['hyperparameters_artifact']} "
                f"from {hp['hyperparameters_source']})"
            )
        for key in ("train_args", "eval_args", "custom_config"):
            if key in hp:
                lines.append(f"  {key + ':':<11} {hp[key]}")
    for check in s.get("data_checks", []):
        lines.append(
            f"  statistics: ExampleStatistics #{check['statistics_id']}  {check['statistics_uri']}"
        )
        for an in check["anomalies"]:
            verdict = (
                f"anomalies in {', '.join(an['anomalous_splits'])}"
                if an["anomalous_splits"]
                else f"no anomalies ({', '.join(an['clean_splits']) or 'all splits'})"
            )
            lines.append(f"  anomalies:  ExampleAnomalies #{an['id']}: {verdict}")
    for ev in s.get("evaluation", []):
        verdict = "BLESSED" if ev["blessed"] else "not blessed"
        lines.append(f"  evaluation: ModelBlessing #{ev['blessing_id']} {verdict}")
        own = {k: v for k, v in ev["metrics"].items() if ":" not in k}
        diffs = {k[len("diff:") :]: v for k, v in ev["metrics"].items() if k.startswith("diff:")}
        if own:
            lines.append(f"  metrics:    {', '.join(f'{k}={v:.4g}' for k, v in own.items())}")
        if diffs:
            lines.append(f"  vs baseline: {', '.join(f'{k}{v:+.4g}' for k, v in diffs.items())}")
        baseline = ev["baseline_model"]
        lines.append(
            f"  baseline:   Model #{baseline['id']}  {baseline['uri']}"
            if baseline
            else "  baseline:   none (no earlier blessed model)"
        )
    for a in s.get("later_actions", []):
        p = a["properties"]
        what = " ".join(str(p[k]) for k in ("action", "label") if p.get(k))
        moved = (
            f" {p.get('from_version') or '-'} -> {p.get('to_version') or '-'}"
            if "to_version" in p
            else ""
        )
        lines.append(
            f"  {a['type']}: {a['when']} {what}{moved} by {p.get('who', '?')}: "
            f"{p.get('reason', '')}"
        )
    return "\n".join(lines)


def diff(d: dict[str, Any]) -> str:
    lines = [f"diff {d['run_a']} -> {d['run_b']}"]
    for section, body in d["sections"].items():
        changed = body["changed"]
        if not changed:
            lines.append(f"{section}: unchanged ({body['unchanged']} compared)")
            continue
        lines.append(f"{section}: {len(changed)} changed, {body['unchanged']} unchanged")
        for c in changed:
            lines.append(f"  {c['key']}: {_short(_fmt(c['a']), 50)} -> {_short(_fmt(c['b']), 50)}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
