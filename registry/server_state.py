"""What a running model server (ours or tensorflow_model_server) reports, over its REST API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def model_status(
    server: str | None, model_name: str, timeout: float = 2.0
) -> dict[int, str] | None:
    """Version -> state (AVAILABLE, LOADING, END...), or None when no server answers."""
    if not server:
        return None
    url = server if "://" in server else f"http://{server}"
    try:
        with urllib.request.urlopen(
            f"{url.rstrip('/')}/v1/models/{model_name}", timeout=timeout
        ) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return {}  # the server is up but has no version of this model
        return None
    except (OSError, ValueError):
        return None
    return {int(s["version"]): s.get("state", "") for s in body.get("model_version_status", [])}
