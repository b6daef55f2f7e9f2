"""What a served model config may say: model names, version labels, and what a label points at.

One rule for every writer and reader of a TF Serving ModelServerConfig (the model server's config
watcher and ReloadConfig, `mlops models`), so a change one of them refuses is refused by all. A
model name becomes a URL segment (/v1/models/NAME) and a metric label, so it is a plain token, not
a path; a label is TF Serving's version label, bounded so it cannot flood logs or metrics.
Pure functions over names and numbers: callers pass what is available, this says why not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

LABEL_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot name a served model, or None."""
    if not name:
        return "a model name is empty"
    if not MODEL_NAME_PATTERN.fullmatch(name):
        return (
            f"invalid model name {_shown(name)}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no paths)"
        )
    return None


def label_problem(label: str) -> str | None:
    """Why `label` cannot be a version label, or None."""
    if not LABEL_PATTERN.fullmatch(label):
        return f"invalid version label {_shown(label)}: use 1-64 letters, digits, '-' or '_'"
    return None


def config_problem(
    models: Iterable[tuple[str, Mapping[str, int]]],
    available: Callable[[str], Iterable[int]],
) -> tuple[str, str] | None:
    """(kind, message) for the first rule a config breaks, or None when it may be applied.

    `models` is (name, {label: version}) per configured model; `available(name)` lists the
    versions a label of that model may point at. kind is "invalid" for a config that is wrong
    whatever is on disk (no model, a bad name or label), "unavailable" for a label whose version
    cannot serve now (a caller may retry after it loads).
    """
    models = list(models)
    if not models:
        return "invalid", "the model config names no model (it would unload every model)"
    for name, labels in models:
        problem = model_name_problem(name)
        if problem:
            return "invalid", problem
        for label in labels:
            problem = label_problem(label)
            if problem:
                return "invalid", f"model {name}: {problem}"
    for name, labels in models:
        if not labels:
            continue
        ready = set(available(name))
        for label, version in sorted(labels.items()):
            if version not in ready:
                return "unavailable", (
                    f"Request to assign label {label} to version {version} of model {name}, "
                    "which is not currently available for inference"
                )
    return None
