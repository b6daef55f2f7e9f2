"""The serving_model directory layout: the one contract between the Pusher and the servers.

TF Serving's file-system source serves `<base_path>/<version>/` where <version> is a decimal number;
everything else under the base path (hidden `.push-*` temp dirs while the Pusher copies) is ignored.
The Pusher (pipeline/push/pusher.py, pipeline/push/warmup_requests.py) writes this layout; the model
server (serving/repository.py, serving/warmup.py), the registry (registry/versions.py) and the model
card (model_card/) read it, all through these names, so they never disagree. It sits at the bottom
beside metadata/ and modules/ and imports nothing from the project."""

from __future__ import annotations

import os
import re
from pathlib import Path

# Where the Pusher puts each model by default: <SERVING_ROOT>/<model name>/<version>/, and where
# `mlops serve` with no model flags looks for every model (TF Serving's model base paths).
SERVING_ROOT = Path(__file__).resolve().parent.parent / "serving_model"
_TEMP_DIR = re.compile(r"^\.push-(\d+)-(\d+)$")
# Files inside a version that TF Serving ignores (assets.extra/): what the Pusher recorded about
# the push, and the warmup requests TF Serving (and serving/warmup.py) replays before serving.
ASSETS_EXTRA = "assets.extra"
PUSH_MARKER = os.path.join(ASSETS_EXTRA, "tfx_push.json")
WARMUP_REQUESTS_FILE = os.path.join(ASSETS_EXTRA, "tf_serving_warmup_requests")
# The model card written at push time (model_card/): <CARD_NAME>.md / .html / .json.
CARD_NAME = "model_card"
# TF Serving's --model_config_file (version labels), kept beside the model base paths.
MODEL_CONFIG_NAME = "models.config"


def is_version_name(name: str) -> bool:
    """ASCII decimal digits only: `str.isdigit` alone accepts '²', which `int()` refuses."""
    return name.isascii() and name.isdigit()


def parse_version(text: str) -> int | None:
    """A version number from a directory name or URL segment; None when it is not one."""
    return int(text) if is_version_name(text) else None


def version_dir(base_path: str, version: int) -> str:
    return os.path.join(base_path, str(version))


def model_config_path(base_path: str) -> str:
    """The model config file (`mlops models` labels) that goes with a model base path."""
    return os.path.join(os.path.dirname(os.path.abspath(base_path)), MODEL_CONFIG_NAME)


def card_path(version_path: str, ext: str) -> str:
    """Where a version's model card in format `ext` (md, html, json) lives."""
    return os.path.join(version_path, ASSETS_EXTRA, f"{CARD_NAME}.{ext}")


def list_versions(base_path: str) -> dict[int, str]:
    """Numeric subdirectories of a model base path, as TF Serving's file-system source sees them."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return {}
    out = {}
    for n in names:
        p = os.path.join(base_path, n)
        if is_version_name(n) and os.path.isdir(p):
            out[int(n)] = p
    return out


def temp_dir_name(version: int, pid: int) -> str:
    """Hidden, non-numeric: neither server loads it while it is being written."""
    return f".push-{version}-{pid}"


def parse_temp_dir_name(name: str) -> tuple[int, int] | None:
    """(version, pid) of a Pusher temp dir name, None for any other name."""
    m = _TEMP_DIR.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None
