"""The model config file the registry writes, and the server applying it when it changes.

Fast: tiny real SavedModels (tests/serving_models.py), a real ModelRepository, real files.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from registry import config_file
from registry.errors import RegistryError
from serving.config_watch import apply_config_file, watch_model_config_file
from serving.errors import ServingError
from serving.repository import ModelRepository
from tests.serving_models import build_model


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("cfg") / "taxi"
    build_model(base / "1", bias=-10.0)
    build_model(base / "2", bias=10.0)
    return base


def _write_labels(path, base, labels: dict[str, int]) -> None:
    config = config_file.new_config("taxi", str(base))
    config.model_config_list.config[0].version_labels.update(labels)
    config_file.write(str(path), config)


def test_written_config_is_a_model_server_config_and_replaced_atomically(tmp_path, base):
    path = tmp_path / "models.config"
    _write_labels(path, base, {"stable": 1, "canary": 2})
    parsed = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = parsed.model_config_list.config
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}
    assert model.model_version_policy.HasField("all") and model.base_path == str(base)
    inode = os.stat(path).st_ino
    _write_labels(path, base, {"stable": 2})
    assert os.stat(path).st_ino != inode  # a new file renamed into place, never rewritten in place
    assert config_file.labels(config_file.read(str(path)), "taxi", str(path)) == {"stable": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["models.config"]  # no temp files left


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "model_config_list { config { name: 'taxi' base_path: '/m' } ",
            "not a valid ModelServerConfig",
        ),
        (
            "model_config_list { config { name: 'taxi' version_labels { key: 'a' value: 'x' } } }",
            "not a valid ModelServerConfig",
        ),
        (
            "model_config_list { config { name: 'a' } config { name: 'a' } }",
            "lists a model name twice",
        ),
        ("custom_model_config { }", "custom_model_config"),
        ("\x00\xff garbage", "not a valid ModelServerConfig"),
    ],
)
def test_a_hand_broken_config_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(RegistryError, match=message):
        config_file.read(str(path))


def test_a_second_writer_is_refused_while_the_lock_is_held(tmp_path):
    path = str(tmp_path / "models.config")
    with config_file.locked(path):
        with pytest.raises(RegistryError, match="holds"):
            with config_file.locked(path):
                pass
        # ...also from another thread (a separate open file description, like another process).
        errors = []

        def other():
            try:
                with config_file.locked(path):
                    pass
            except RegistryError as e:
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert errors
    with config_file.locked(path):  # released
        pass


def test_server_applies_labels_only_for_available_versions(tmp_path, base):
    path = tmp_path / "models.config"
    _write_labels(path, base, {"stable": 1})
    repo = ModelRepository(config_file.read(str(path)), poll_wait_seconds=0)
    try:
        assert repo.resolve("taxi", label="stable").version == 1
        _write_labels(path, base, {"stable": 3})  # version 3 does not exist
        with pytest.raises(ValueError, match="not currently available"):
            apply_config_file(repo, str(path))
        assert repo.resolve("taxi", label="stable").version == 1
        _write_labels(path, base, {"stable": 2})
        apply_config_file(repo, str(path))
        assert repo.resolve("taxi", label="stable").version == 2

        async def watch_a_change():
            task = asyncio.create_task(watch_model_config_file(repo, str(path), 0.05))
            await asyncio.sleep(0.2)
            path.write_text("garbage {")  # rejected, logged, old config stays
            await asyncio.sleep(0.3)
            assert repo.resolve("taxi", label="stable").version == 2
            _write_labels(path, base, {"stable": 1, "canary": 2})
            for _ in range(100):
                await asyncio.sleep(0.05)
                try:
                    repo.resolve("taxi", label="canary")
                    break
                except ServingError:
                    pass
            task.cancel()

        asyncio.run(watch_a_change())
        assert repo.resolve("taxi", label="stable").version == 1
        assert repo.resolve("taxi", label="canary").version == 2
    finally:
        repo.stop()


def test_cli_edits_the_deploy_config_in_place_keeping_its_base_path(tmp_path, base):
    """docs/models.md's `mlops models --config deploy/serving/models.config promote ...`."""
    import shutil

    from click.testing import CliRunner

    from mlops.cli import main
    from registry.store import RegistryStore
    from tests.paths import PROJECT_ROOT

    local = tmp_path / "taxi"
    shutil.copytree(base, local)
    config = tmp_path / "models.config"
    shutil.copy(PROJECT_ROOT / "deploy" / "serving" / "models.config", config)
    metadata = str(tmp_path / "metadata.db")
    RegistryStore(metadata, create=True)  # an empty real store

    def models(*args):
        return CliRunner().invoke(
            main,
            [
                "models",
                f"--base-path={local}",
                f"--config={config}",
                f"--metadata={metadata}",
                "--server=",
                *args,
            ],
        )

    result = models("promote", "2", "--label", "stable", "--reason", "first")
    assert result.exit_code == 0, result.output
    entries = {c.name: c for c in config_file.read(str(config)).model_config_list.config}
    assert set(entries) == {"taxi", "penguins"}  # the other model's entry is kept as written
    assert not entries["penguins"].version_labels
    entry = entries["taxi"]
    assert entry.base_path == "/models/taxi"  # the container's view, kept as written
    assert dict(entry.version_labels) == {"stable": 2} and entry.model_version_policy.HasField(
        "all"
    )
    before = config.read_bytes()
    for args, message in [
        (("promote", "7", "--label", "stable", "--reason", "x"), "not on disk"),
        (("retire", "2"), "labelled stable"),
        (("rollback",), "no earlier version"),
        (("promote", "1", "--label", "canary", "--reason", " "), "--reason"),
    ]:
        result = models(*args)
        assert result.exit_code == 1 and message in result.stderr, (args, result.output)
        assert config.read_bytes() == before
    assert models("retire", "1", "--reason", "old").exit_code == 0
    assert (tmp_path / "taxi-archive" / "1" / "saved_model.pb").is_file()
    history = models("history").output.splitlines()
    assert [line.split()[1] for line in history] == ["promote", "retire"]


def test_a_label_may_only_point_at_a_version_the_running_server_has_loaded(tmp_path, base):
    """TF Serving's rule, checked against a real server before the file is touched."""
    import subprocess
    import sys

    from registry.store import RegistryStore
    from tests.serving_models import ServerProcess

    config = tmp_path / "models.config"
    cfg = config_file.new_config("taxi", str(base))
    cfg.model_config_list.config[0].model_version_policy.specific.versions.append(
        1
    )  # 2: on disk only
    config_file.write(str(config), cfg)
    metadata = str(tmp_path / "metadata.db")
    RegistryStore(metadata, create=True)
    server = ServerProcess(f"--model_config_file={config}").wait_ready()
    try:

        def models(*args):
            return subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mlops.cli",
                    "models",
                    f"--base-path={base}",
                    f"--config={config}",
                    f"--metadata={metadata}",
                    f"--server=127.0.0.1:{server.rest_port}",
                    *args,
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )

        before = config.read_bytes()
        result = models("promote", "2", "--label", "stable", "--reason", "x")
        assert result.returncode == 1 and "not loaded on the server" in result.stderr, result.stderr
        assert config.read_bytes() == before
        result = models("promote", "1", "--label", "stable", "--reason", "x")
        assert result.returncode == 0, result.stderr
        rows = json.loads(models("list", "--json").stdout)
        assert {r["version"]: (r["server_state"], r["labels"]) for r in rows} == {
            2: ("not loaded", []),
            1: ("AVAILABLE", ["stable"]),
        }
    finally:
        server.stop()
