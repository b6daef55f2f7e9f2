"""Re-read --model_config_file when it changes (TF Serving's --model_config_file_poll_wait_seconds).

`mlops models promote` rewrites the model config file atomically (temp file + rename); this
watcher sees the new file on its next poll and applies it through the same path as the gRPC
ReloadConfig call. Like TF Serving, a file that does not parse, or that labels a version which is
not available, is rejected with one log line and the config in force stays as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from serving.config import load_model_config_file
from serving.errors import ServingError
from serving.repository import ModelRepository, State

log = logging.getLogger(__name__)


def _digest(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).digest()
    except OSError:
        return None


def check_version_labels(repository: ModelRepository, config) -> None:
    """TF Serving's rule: a label may only name a version that is available now.

    Models the reload adds are not checked (they load during the reload), as with TF Serving's
    allow_version_labels_for_unavailable_models for new models.
    """
    known = set(repository.model_names())
    for model in config.model_config_list.config:
        if model.name not in known or not model.version_labels:
            continue
        try:
            available = {
                v for v, st in repository.status(model.name) if st.state == State.AVAILABLE
            }
        except ServingError:
            available = set()
        for label, version in model.version_labels.items():
            if version not in available:
                raise ValueError(
                    f"Request to assign label {label} to version {version} of model {model.name}, "
                    "which is not currently available for inference"
                )


def apply_config_file(repository: ModelRepository, path: str) -> None:
    """Parse, check and apply the file; raises (and changes nothing) when it is not acceptable."""
    config = load_model_config_file(path)
    check_version_labels(repository, config)
    repository.reload_config(config)


async def watch_model_config_file(
    repository: ModelRepository, path: str, poll_wait_seconds: float
) -> None:
    """Poll until cancelled; apply each new content of the file once."""
    applied = _digest(path)
    while True:
        await asyncio.sleep(poll_wait_seconds)
        current = _digest(path)
        if current is None or current == applied:
            continue
        applied = current  # a rejected file is reported once, not on every poll
        try:
            await asyncio.to_thread(apply_config_file, repository, path)
            log.info("Applied model config file %s", path)
        except Exception as e:  # noqa: BLE001 - any bad file is reported, the old config stays
            log.error("Rejected model config file %s, keeping the current config: %s", path, e)
