"""`mlops models` tells a server that answers "not ready" (503: no version of the model is
servable) from one that does not answer at all, against a real `mlops serve` process whose only
version of `taxi` cannot be loaded (a 0-byte saved_model.pb) and a free port with no server."""

from __future__ import annotations

import pytest

from registry import server_state
from registry.errors import RegistryError
from registry.operations import Registry
from tests.serving_models import ServerProcess, build_model, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("server-state")
    (root / "taxi" / "1").mkdir(parents=True)
    (root / "taxi" / "1" / "saved_model.pb").write_bytes(b"")  # no loadable version
    build_model(root / "good" / "1")
    config = root / "models.config"
    config.write_text(
        "model_config_list { "
        + " ".join(
            f'config {{ name: "{m}" base_path: "{root / m}" model_platform: "tensorflow" }}'
            for m in ("taxi", "good")
        )
        + " }\n"
    )
    proc = ServerProcess(
        f"--model_config_file={config}", "--file_system_poll_wait_seconds=0"
    ).wait_ready()
    # A version pushed after the server's only poll: on disk, never seen by the server.
    (root / "taxi" / "2").mkdir()
    proc.root = root
    yield proc
    proc.stop()


def _registry(served, model: str, server: str) -> Registry:
    root = served.root
    return Registry(
        str(root / model), str(root / "models.config"), str(root / "m.db"), model, server
    )


def test_not_ready_is_told_apart_from_unreachable(served):
    server = f"127.0.0.1:{served.rest_port}"
    status = server_state.model_status(server, "taxi", versions=(1, 2))
    assert status is not None and not status.ready
    assert "no servable version" in status.reason
    assert status.states == {1: "END"}  # the broken version's own state
    assert status.state(2) == server_state.NOT_READY

    ready = server_state.model_status(server, "good", versions=(1,))
    assert ready is not None and ready.ready and ready.state(1) == "AVAILABLE"
    assert ready.state(7) == server_state.NOT_LOADED
    assert server_state.model_status(f"127.0.0.1:{free_port()}", "taxi") is None


def test_models_list_and_promote_say_not_ready(served):
    rows = _registry(served, "taxi", f"127.0.0.1:{served.rest_port}").list()
    assert {r["version"]: r["server_state"] for r in rows} == {
        2: server_state.NOT_READY,
        1: "END",
    }
    gone = _registry(served, "taxi", f"127.0.0.1:{free_port()}").list()
    assert all(r["server_state"] is None for r in gone)  # printed as "no server"

    registry = _registry(served, "taxi", f"127.0.0.1:{served.rest_port}")
    with pytest.raises(RegistryError, match=r"version 1 is END .*the model is not ready: "):
        registry.promote(1, "stable", "try the broken one")
    assert "stable" not in registry.labels()
