"""Version directories under a TF Serving model base path, and the archive beside it.

Reads the push marker that pipeline/push.py's AtomicPusherExecutor leaves in every version
(`assets.extra/tfx_push.json`: the Model URI and the push time). The names are repeated here, not
imported, because importing pipeline.push pulls in TFX (~25 s) and `mlops models` must be quick;
the lead re-points them at the serving_model layout module when it lands.
"""

from __future__ import annotations

import json
import os
from typing import Any

from registry.errors import RegistryError

ASSETS_EXTRA = "assets.extra"  # TF Serving ignores it; push marker and model cards live there
PUSH_MARKER = os.path.join(ASSETS_EXTRA, "tfx_push.json")
CARD_NAME = "model_card"


def on_disk(base_path: str) -> dict[int, str]:
    """Numeric version directories, as TF Serving's file-system source sees them."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return {}
    return {
        int(n): os.path.join(base_path, n)
        for n in names
        if n.isdigit() and os.path.isdir(os.path.join(base_path, n))
    }


def archive_dir(base_path: str) -> str:
    """`<base>-archive/` beside the base path: outside it, so no server loads what is there."""
    base = os.path.abspath(base_path).rstrip(os.sep)
    return base + "-archive"


def archived(base_path: str) -> dict[int, str]:
    return on_disk(archive_dir(base_path))


def push_marker(version_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(version_dir, PUSH_MARKER)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def card_path(version_dir: str, ext: str) -> str:
    return os.path.join(version_dir, ASSETS_EXTRA, f"{CARD_NAME}.{ext}")


def parse_version(text: str) -> int:
    text = str(text).strip()
    if not text.isdigit():
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
