"""The lineage of a trace as a picture: .dot always, .svg/.png via Graphviz or a built-in layout.

Graphviz's ``dot`` binary gives the nicest layout, but it is a system package that a fresh
machine may lack, and a lineage picture must not depend on it. So DOT text is written by hand
(no binary needed), ``dot`` renders SVG/PNG when it is on PATH, and otherwise a small layered
layout (ranks = longest path from the inputs, top to bottom) is drawn directly as SVG, or as PNG
through Pillow, which TensorFlow's stack already installs.
"""

from __future__ import annotations

import dataclasses
import html
import os
import shutil
import subprocess
from typing import Any

from cli_support import Exit
from lineage.queries import Trace
from metadata.store import MetadataError

FORMATS = ("dot", "svg", "png")
_ARTIFACT_COLOR = "#dbeafe"
_EXECUTION_COLOR = "#fde68a"
_FILE_COLOR = "#e5e7eb"
_TARGET_COLOR = "#bbf7d0"


@dataclasses.dataclass
class Node:
    id: str
    label: list[str]
    kind: str  # artifact | execution | file
    target: bool = False


def build(t: Trace, collapse: bool = True) -> tuple[list[Node], list[tuple[str, str, str]]]:
    """Nodes and labelled edges (data flow direction: input -> execution -> output).

    collapse (the default) summarises the artifacts that pass from one execution to another
    as the label of one edge between the two ("examples: Examples #3"), so the picture is the
    pipeline's shape, about one node per component; the target, the input files and artifacts
    with no producer in the trace stay nodes. collapse=False draws every artifact as a node.
    """
    nodes: list[Node] = []
    edges: list[tuple[str, str, str]] = []
    summarised = {
        a_id
        for a_id in t.artifacts
        if collapse and a_id != t.target and t.producer_of(a_id) is not None
    }
    for a in sorted(t.artifacts.values(), key=lambda a: a["id"]):
        if a["id"] in summarised:
            continue
        nodes.append(Node(f"a{a['id']}", _artifact_label(a), "artifact", a["id"] == t.target))
    for e in sorted(t.executions.values(), key=lambda e: e["id"]):
        nodes.append(Node(f"e{e['id']}", [e["component"], f"#{e['id']} {e['state']}"], "execution"))
    passed: dict[tuple[str, str], list[str]] = {}
    for exec_id, art_id, key, direction in t.edges:
        if art_id in summarised:
            producer = t.producer_of(art_id)
            if direction == "input" and producer != exec_id:
                a = t.artifacts[art_id]
                text = f"{key}: {a['type']} #{art_id}"
                passed.setdefault((f"e{producer}", f"e{exec_id}"), []).append(text)
        elif direction == "input":
            edges.append((f"a{art_id}", f"e{exec_id}", key))
        else:
            edges.append((f"e{exec_id}", f"a{art_id}", key))
    for (src, dst), texts in sorted(passed.items()):
        shown = sorted(set(texts))
        more = f" (+{len(shown) - 2})" if len(shown) > 2 else ""
        edges.append((src, dst, "\n".join(shown[:2]) + more))
    n_files = 0
    for item in t.summary.get("inputs", []):
        producer = t.producer_of(item["examples_id"])
        for path in item["files"]:
            n_files += 1
            node_id = f"f{n_files}"
            nodes.append(
                Node(
                    node_id, [os.path.basename(path) or path, _tail(os.path.dirname(path))], "file"
                )
            )
            if producer is not None:
                edges.append((node_id, f"e{producer}", f"span {item['span']}"))
    return nodes, edges


def _artifact_label(a: dict[str, Any]) -> list[str]:
    props = a["properties"]
    label = [f"{a['type']} #{a['id']}"]
    for key in ("span", "blessed", "pushed_version"):
        if key in props:
            label.append(f"{key}={props[key]}")
    label.append(_tail(a["uri"]))
    return label


def _tail(path: str, keep: int = 3) -> str:
    parts = [p for p in str(path).split(os.sep) if p]
    return ("…/" if len(parts) > keep else "/") + "/".join(parts[-keep:])


def to_dot(t: Trace, collapse: bool = True) -> str:
    """Graphviz DOT, layered top-down (inputs at the top, the target at the bottom): a
    pipeline's lineage is long and narrow, so left-to-right drew a strip too wide to read
    without zooming (4170x258 px)."""
    nodes, edges = build(t, collapse)
    lines = [
        "digraph lineage {",
        "  rankdir=TB; nodesep=0.25; ranksep=0.35;",
        '  node [fontname="Helvetica", fontsize=10, style="filled,rounded", margin="0.1,0.04"];',
        '  edge [fontname="Helvetica", fontsize=8, color="#555555"];',
    ]
    for n in nodes:
        shape = {"artifact": "note", "execution": "box", "file": "folder"}[n.kind]
        color = (
            _TARGET_COLOR
            if n.target
            else {"artifact": _ARTIFACT_COLOR, "execution": _EXECUTION_COLOR, "file": _FILE_COLOR}[
                n.kind
            ]
        )
        label = "\\n".join(_dot_escape(x) for x in n.label)
        lines.append(f'  {n.id} [label="{label}", shape={shape}, fillcolor="{color}"];')
    for src, dst, key in edges:
        label = "\\n".join(_dot_escape(x) for x in key.split("\n"))
        lines.append(f'  {src} -> {dst} [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def write(
    t: Trace, output: str, fmt: str | None = None, engine: str = "auto", collapse: bool = True
) -> str:
    """Write the picture; the format comes from the extension unless given.

    Returns the renderer used.

    engine: 'auto' (graphviz if installed, else built-in), 'graphviz' or 'builtin'.
    """
    fmt = (fmt or os.path.splitext(output)[1].lstrip(".")).lower()
    if fmt not in FORMATS:
        raise MetadataError(
            f"unsupported graph format {fmt!r}: use one of {', '.join(FORMATS)}", Exit.FAILED
        )
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise MetadataError(f"output directory does not exist: {parent}")
    dot_text = to_dot(t, collapse)
    if fmt == "dot":
        with open(output, "w") as f:
            f.write(dot_text)
        return "dot-text"
    dot_bin = shutil.which("dot")
    if engine == "graphviz" and not dot_bin:
        raise MetadataError(
            "Graphviz 'dot' is not installed (apt-get install graphviz); use --engine builtin",
            Exit.FAILED,
        )
    if dot_bin and engine in ("auto", "graphviz"):
        proc = subprocess.run(
            [dot_bin, f"-T{fmt}", "-o", output],
            input=dot_text.encode(),
            capture_output=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise MetadataError(
                f"graphviz failed: {proc.stderr.decode(errors='replace').strip()[:500]}",
                Exit.FAILED,
            )
        return "graphviz"
    nodes, edges = build(t, collapse)
    layout = _layout(nodes, edges)
    if fmt == "svg":
        with open(output, "w") as f:
            f.write(_svg(nodes, edges, layout))
    else:
        _png(nodes, edges, layout, output)
    return "builtin"


# ---- built-in layered layout -------------------------------------------------------------------
_W, _H, _GAP_X, _GAP_Y, _MARGIN = 210, 58, 24, 46, 20


def _layout(nodes: list[Node], edges: list[tuple[str, str, str]]) -> dict[str, tuple[float, float]]:
    preds: dict[str, list[str]] = {n.id: [] for n in nodes}
    for src, dst, _ in edges:
        preds[dst].append(src)
    rank: dict[str, int] = {}

    def rank_of(node: str, stack: frozenset[str] = frozenset()) -> int:
        if node in rank:
            return rank[node]
        if node in stack:  # lineage is acyclic; guard anyway
            return 0
        r = 1 + max((rank_of(p, stack | {node}) for p in preds[node]), default=-1)
        rank[node] = r
        return r

    for n in nodes:
        rank_of(n.id)
    rows: dict[int, list[str]] = {}
    for n in nodes:
        rows.setdefault(rank[n.id], []).append(n.id)
    pos: dict[str, tuple[float, float]] = {}
    for r in sorted(rows):
        row = rows[r]
        if r > 0:
            # Barycenter of predecessors keeps edges short and mostly vertical.
            row.sort(
                key=lambda n: sum(pos[p][0] for p in preds[n] if p in pos) / max(1, len(preds[n]))
            )
        for i, node in enumerate(row):
            pos[node] = (_MARGIN + i * (_W + _GAP_X), _MARGIN + r * (_H + _GAP_Y))
    return pos


def _size(layout: dict[str, tuple[float, float]]) -> tuple[int, int]:
    width = max((x for x, _ in layout.values()), default=0) + _W + _MARGIN
    height = max((y for _, y in layout.values()), default=0) + _H + _MARGIN
    return int(width), int(height)


def _fill(n: Node) -> str:
    if n.target:
        return _TARGET_COLOR
    return {"artifact": _ARTIFACT_COLOR, "execution": _EXECUTION_COLOR, "file": _FILE_COLOR}[n.kind]


def _clip(text: str, limit: int = 34) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _svg(nodes: list[Node], edges: list[tuple[str, str, str]], pos: dict[str, Any]) -> str:
    width, height = _size(pos)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for src, dst, key in edges:
        x1, y1 = pos[src][0] + _W / 2, pos[src][1] + _H
        x2, y2 = pos[dst][0] + _W / 2, pos[dst][1]
        mid = (y1 + y2) / 2
        out.append(
            f'<path d="M{x1:.0f},{y1:.0f} C{x1:.0f},{mid:.0f} '
            f'{x2:.0f},{mid:.0f} {x2:.0f},{y2:.0f}" '
            'fill="none" stroke="#555" stroke-width="1" marker-end="url(#arrow)"/>'
        )
        out.append(
            f'<text x="{(x1 + x2) / 2 + 4:.0f}" y="{mid:.0f}" font-size="8" fill="#333">'
            f"{html.escape(key.splitlines()[0] if key else '')}</text>"
        )
    for n in nodes:
        x, y = pos[n.id]
        rx = 10 if n.kind == "execution" else 3
        out.append(
            f'<g id="{n.id}"><rect x="{x:.0f}" y="{y:.0f}" width="{_W}" height="{_H}" rx="{rx}" '
            f'fill="{_fill(n)}" stroke="#333"/>'
        )
        for i, line in enumerate(n.label[:4]):
            weight = ' font-weight="bold"' if i == 0 else ""
            out.append(
                f'<text x="{x + 8:.0f}" y="{y + 15 + i * 13:.0f}" font-size="10"{weight}>'
                f"{html.escape(_clip(line))}</text>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _png(
    nodes: list[Node], edges: list[tuple[str, str, str]], pos: dict[str, Any], output: str
) -> None:
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise MetadataError(
            "PNG output needs Graphviz (apt-get install graphviz) or Pillow",
            Exit.FAILED,
        ) from None
    width, height = _size(pos)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for src, dst, _key in edges:
        x1, y1 = pos[src][0] + _W / 2, pos[src][1] + _H
        x2, y2 = pos[dst][0] + _W / 2, pos[dst][1]
        draw.line([(x1, y1), (x2, y2)], fill="#555555", width=1)
        draw.polygon([(x2, y2), (x2 - 4, y2 - 7), (x2 + 4, y2 - 7)], fill="#555555")
    for n in nodes:
        x, y = pos[n.id]
        draw.rounded_rectangle([x, y, x + _W, y + _H], radius=8, fill=_fill(n), outline="#333333")
        for i, line in enumerate(n.label[:4]):
            draw.text((x + 8, y + 5 + i * 13), _clip(line).replace("…", "..."), fill="black")
    image.save(output, format="PNG")
