"""The Models page's label actions: promote a version to a label, roll a label back.

They go through registry/operations.py, the code path of `mlops models promote | rollback`: the
same checks (version on disk, loaded by the server when one answers, label rules), the same
atomic write of the TF Serving model config file, and the same audit record in ML Metadata (who,
when, reason). The page adds one rule of its own: a rollback needs a reason too.
"""

from __future__ import annotations

import os

import pandas as pd

from apps.ui.settings import Settings
from registry.errors import RegistryError
from registry.operations import Registry
from registry.store import Action, who_am_i

HISTORY_COLUMNS = ["when", "action", "label", "from_version", "to_version", "who", "reason"]
VIA = "web app"


def config_path(cfg: Settings) -> str:
    """The model config file: the configured one, else models.config beside the base path (as
    `mlops models`)."""
    base = os.path.abspath(cfg.serving_dir)
    return cfg.model_config or os.path.join(os.path.dirname(base), "models.config")


def registry(cfg: Settings) -> Registry:
    return Registry(
        base_path=os.path.abspath(cfg.serving_dir),
        config_path=config_path(cfg),
        metadata=cfg.metadata,
        model_name=cfg.model_name,
        server=f"{cfg.server_host}:{cfg.rest_port}",
    )


def actor() -> str:
    """Who the audit trail names: the app's user (MLOPS_ACTOR or user@host), via the web app."""
    return f"{who_am_i()} ({VIA})"


def _reason(reason: str) -> str:
    if not reason.strip():
        raise RegistryError("a reason is required: it goes into the audit trail")
    return reason.strip()


def promote(cfg: Settings, version: int, label: str, reason: str) -> Action:
    """Point `label` at `version`; RegistryError (shown on the page) when anything is off."""
    return registry(cfg).promote(version, label.strip(), _reason(reason), who=actor())


def rollback(cfg: Settings, label: str, reason: str) -> Action:
    """Point `label` back at the version that held it before (from the audit trail)."""
    return registry(cfg).rollback(label.strip(), _reason(reason), who=actor())


def labels_table(cfg: Settings) -> pd.DataFrame:
    """label -> version, as the model config file holds them now."""
    labels = registry(cfg).labels()
    return pd.DataFrame(
        {"label": list(labels), "version": list(labels.values())}, columns=["label", "version"]
    )


def history_table(cfg: Settings) -> pd.DataFrame:
    """Pushes and label changes, newest first."""
    actions = registry(cfg).history()
    rows = [{c: getattr(a, c) for c in HISTORY_COLUMNS} for a in reversed(actions)]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def describe(action: Action) -> str:
    return (
        f"{action.action} {action.label}: {action.from_version or '-'} -> {action.to_version} "
        f"(recorded as ML Metadata execution #{action.execution_id})"
    )
