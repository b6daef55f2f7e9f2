"""What a running model server (ours or tensorflow_model_server) reports, over its REST API.

Three answers are kept apart, because they call for different actions: no server answers
(`model_status` returns None: start one, or check `--server`), the server answers but the model
is not ready (our server's readiness answer, 503 UNAVAILABLE, when no version of the model is
servable: a corrupt newest version, a load still running), and the server serves the model.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field

NOT_READY = "not ready"  # a version the server does not report while the model is not ready
NOT_LOADED = "not loaded"  # a version a ready server does not report


@dataclass(frozen=True)
class ServerStatus:
    """One model as the server reports it: version -> state (AVAILABLE, LOADING, END, ...)."""

    states: dict[int, str] = field(default_factory=dict)
    ready: bool = True
    reason: str = ""  # the server's own words when the model is not ready

    def state(self, version: int) -> str:
        """The version's state, or why the server has none for it."""
        return self.states.get(version) or (NOT_LOADED if self.ready else NOT_READY)


def _get(url: str, timeout: float) -> tuple[int, dict]:
    """(HTTP status, JSON body or {}) of a GET; OSError when no server answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read() or b"{}")
        except ValueError:
            body = {}
        return e.code, body if isinstance(body, dict) else {}


def _states(body: dict) -> dict[int, str]:
    return {int(s["version"]): s.get("state", "") for s in body.get("model_version_status", [])}


def model_status(
    server: str | None, model_name: str, timeout: float = 2.0, versions: Iterable[int] = ()
) -> ServerStatus | None:
    """The model's status, or None when no server answers. When the model is not ready (503),
    each of `versions` is asked for by number, so a corrupt or loading version shows its own
    state (TF Serving answers a version's status whatever the model's readiness)."""
    if not server:
        return None
    url = server if "://" in server else f"http://{server}"
    model_url = f"{url.rstrip('/')}/v1/models/{model_name}"
    try:
        code, body = _get(model_url, timeout)
        if code == 404:
            return ServerStatus()  # the server is up but has no version of this model
        if code == 503:
            states = {}
            for v in versions:
                code_v, body_v = _get(f"{model_url}/versions/{v}", timeout)
                if code_v == 200:
                    states.update(_states(body_v))
            return ServerStatus(states, ready=False, reason=str(body.get("error", "")))
        if code != 200:
            return None
    except (OSError, ValueError):
        return None
    return ServerStatus(_states(body))
