"""Re-read --model_config_file when it changes (TF Serving's --model_config_file_poll_wait_seconds).

`mlops models promote` rewrites the model config file atomically (temp file + rename); this
watcher sees the new file on its next poll and applies it through the same path as the gRPC
ReloadConfig call, so both apply the same rules (ModelRepository.check_config: names no model, a
bad model name or label, a label of a version that is not available). A file that does not parse
or breaks a rule is rejected with one log line and the config in force stays as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from serving.config import load_model_config_file
from serving.errors import ServingError
from serving.repository import ModelRepository

log = logging.getLogger(__name__)


def _digest(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).digest()
    except OSError:
        return None


def apply_config_file(repository: ModelRepository, path: str) -> None:
    """Parse, check and apply the file; raises (and changes nothing) when it is not acceptable."""
    try:
        repository.reload_config(load_model_config_file(path))
    except ServingError as e:  # a file breaks a rule: the same ValueError as one that won't parse
        raise ValueError(e.message) from None


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
