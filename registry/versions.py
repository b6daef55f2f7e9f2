"""Version directories under a TF Serving model base path, and the archive beside it.

Reads the push marker that pipeline/push/pusher.py's AtomicPusherExecutor leaves in every version
(`assets.extra/tfx_push.json`: the Model URI and the push time). The names come from
model_layout/, the layout's one home, which imports nothing heavy, so `mlops models` stays quick.
"""

from __future__ import annotations

import json
import os
from typing import Any

import model_layout as layout
from registry.errors import RegistryError

# Numeric version directories, as TF Serving's file-system source sees them.
on_disk = layout.list_versions
card_path = layout.card_path


def archive_dir(base_path: str) -> str:
    """`<base>-archive/` beside the base path: outside it, so no server loads what is there."""
    base = os.path.abspath(base_path).rstrip(os.sep)
    return base + "-archive"


def archived(base_path: str) -> dict[int, str]:
    return on_disk(archive_dir(base_path))


def push_marker(version_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(version_dir, layout.PUSH_MARKER)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def parse_version(text: str) -> int:
    text = str(text).strip()
    if not layout.is_version_name(text):
        raise RegistryError(
            f"version must be a number (a directory name under the base path), got {text!r}"
        )
    return int(text)


def archive(base_path: str, version: int) -> str:
    """Move a version out of the served base path into the archive (never deleted)."""
    source = os.path.join(base_path, str(version))
    target_dir = archive_dir(base_path)
    os.makedirs(target_dir, exist_ok=True)
    target = os.path.join(target_dir, str(version))
    if os.path.exists(target):
        raise RegistryError(f"the archive already holds version {version}: {target}")
    os.rename(source, target)  # one step on the same file system: served or archived, never half
    return target
