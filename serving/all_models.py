"""`mlops serve` with no model flags: every dataset's pushed model from one model_config_list.

TF Serving serves several models from one `model_config_list`; this builds that list from the
project's own layout instead of asking for it. Every dataset under datasets/ (the dataset specs,
through metadata/locations.py) whose model has at least one pushed version under the serving root
(`<root>/<model>/<version>/`, model_layout/) gets an entry in the root's shared `models.config`
(model_layout/model_config.py): existing entries, with their version labels and policies, are kept
as they are, so each model keeps its own labels and `mlops models promote` changes go on working.
The server then serves that file like `--model_config_file` and re-reads it when it changes.
"""

from __future__ import annotations

import os

import model_layout
from metadata.locations import locations
from model_layout import model_config
from modules import dataset_spec


def pushed_models(serving_root: str | os.PathLike) -> dict[str, str]:
    """Model name -> base path of every dataset whose model has a version under the root."""
    models = {}
    for name in dataset_spec.available():
        try:
            model_name = locations(name).model_name
        except dataset_spec.SpecError:
            continue  # a broken spec serves nothing; `mlops dataset`/the runner report it
        base = os.path.join(os.path.abspath(serving_root), model_name)
        if model_layout.list_versions(base):
            models[model_name] = base
    return models


def shared_config(serving_root: str | os.PathLike) -> str:
    """The root's models.config holding every pushed model (added when missing); ValueError when
    there is nothing to serve."""
    path = model_config.config_path(serving_root)
    pushed = pushed_models(serving_root)
    if pushed:
        model_config.ensure_models(path, pushed)
    if not os.path.exists(path):
        known = ", ".join(dataset_spec.available()) or "none"
        raise ValueError(
            f"no pushed model under {os.path.abspath(serving_root)} (datasets: {known}): run the "
            "pipeline first, or pass --model_base_path or --model_config_file"
        )
    return path
