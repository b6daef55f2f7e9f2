"""Atomic Pusher: a new model version appears in serving_model/<name>/ all at once, or not at all.

The stock TFX Pusher copies files straight into <base>/<version>/, so a polling model server (ours,
or TF Serving) can find a half-written version, and a run killed mid-copy leaves one behind. This
executor copies into a hidden temp directory in the same base directory (`.push-<version>-<pid>`,
non-numeric, so neither server looks at it) and then os.rename()s it to <base>/<version>: one
atomic step on a local (POSIX) file system.

It also makes a re-run after a crash idempotent: every pushed version carries
`assets.extra/tfx_push.json` naming the model it came from, and a model that is already in the
base directory is not pushed twice (the PushedModel artifact points at the existing version).
Versions are Unix seconds like the stock Pusher, but never lower than the newest version already
there, so the served (highest) version is always the newest push.

Non-local destinations (gs://, s3://, ...) use the stock executor: object stores have no
directory rename.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, component_spec, standard_artifacts, standard_component_specs
from tfx.utils import json_utils, proto_utils

import model_layout as layout
from model_layout import model_config
from pipeline.push import warmup_requests

PUSH_MARKER = layout.PUSH_MARKER


def _is_local(path: str) -> bool:
    return "://" not in path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_dirs(base_directory: str) -> list[str]:
    """Delete temp dirs left by pushes whose process died (e.g. killed mid-copy)."""
    removed = []
    if not os.path.isdir(base_directory):
        return removed
    for name in os.listdir(base_directory):
        parsed = layout.parse_temp_dir_name(name)
        if parsed and (parsed[1] == os.getpid() or not _pid_alive(parsed[1])):
            shutil.rmtree(os.path.join(base_directory, name), ignore_errors=True)
            removed.append(name)
    return removed


numeric_versions = layout.list_versions


def _pushed_from(version_dir: str) -> str | None:
    try:
        with open(os.path.join(version_dir, PUSH_MARKER)) as f:
            return json.load(f).get("model_uri")
    except (OSError, ValueError):
        return None


def atomic_push(model_path: str, base_directory: str, model_uri: str) -> tuple[str, str, bool]:
    """Copy `model_path` to a new version dir under `base_directory` atomically.
    Returns (version dir, version, whether a new version was written)."""
    os.makedirs(base_directory, exist_ok=True)
    remove_stale_temp_dirs(base_directory)
    existing = numeric_versions(base_directory)
    for version, path in sorted(existing.items()):
        if _pushed_from(path) == model_uri:
            logging.info("Model %s is already pushed as %s; not pushing it twice.", model_uri, path)
            return path, str(version), False
    version = max([int(time.time())] + [v + 1 for v in existing])
    temp = os.path.join(base_directory, layout.temp_dir_name(version, os.getpid()))
    shutil.rmtree(temp, ignore_errors=True)
    try:
        shutil.copytree(model_path, temp)
        marker = os.path.join(temp, PUSH_MARKER)
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w") as f:
            json.dump({"model_uri": model_uri, "pushed_at": time.time()}, f)
        while True:
            target = layout.version_dir(base_directory, version)
            if not os.path.exists(target):
                try:
                    os.rename(temp, target)  # atomic; fails on a non-empty target
                    break
                except OSError:
                    pass  # another pusher took this version meanwhile
            version += 1
        _fsync_dir(base_directory)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target, str(version), True


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicPusherExecutor(pusher_executor.Executor):
    """TFX Pusher executor with an atomic, idempotent file-system push (see module doc)."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 - TFX API
        push_destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], push_destination
        )
        base_directory = push_destination.filesystem.base_directory
        if push_destination.WhichOneof("destination") != "filesystem" or not _is_local(
            base_directory
        ):
            return super().Do(input_dict, output_dict, exec_properties)

        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return None
        model_path = self.GetModelPath(input_dict)
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        # TF Serving warmup requests from a few eval examples (pipeline/push/warmup_requests.py).
        model_path = warmup_requests.staged_with_warmup(
            model_path,
            input_dict.get(warmup_requests.EXAMPLES_KEY, []),
            self._get_tmp_dir() if self._context else tempfile.mkdtemp(),
            os.path.basename(os.path.normpath(base_directory)),
        )
        serving_path, version, written = atomic_push(model_path, base_directory, model.uri)
        logging.info(
            "Model %s to serving path %s.", "written" if written else "found", serving_path
        )
        # The PushedModel artifact keeps its own copy, as with the stock Pusher.
        shutil.copytree(model_path, model_push.uri, dirs_exist_ok=True)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
        # The serving root's one models.config gets this model's entry (others' are kept), so
        # `mlops serve`, TF Serving and `mlops models` find every pushed model there.
        model_config.ensure_models(
            model_config.beside(base_directory),
            {os.path.basename(os.path.normpath(base_directory)): base_directory},
        )
        if written:
            _write_model_card(input_dict, exec_properties, serving_path, model.id)
        return None


MODEL_CARD_METADATA_KEY = "model_card_metadata"


def _write_model_card(input_dict, exec_properties, serving_path: str, model_id: int) -> None:
    """Model card from ML Metadata beside the new version (model_card/); a card that cannot
    be written is logged and never fails the push."""
    custom = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or {}
    custom = json.loads(custom) if isinstance(custom, str) else custom
    metadata = (custom or {}).get(MODEL_CARD_METADATA_KEY)
    if not metadata:
        return
    try:
        from model_card import write_at_push

        blessings = input_dict.get(standard_component_specs.MODEL_BLESSING_KEY) or []
        model_name = os.path.basename(os.path.dirname(serving_path))
        paths = write_at_push(
            metadata, serving_path, model_id, blessings[0].id if blessings else None, model_name
        )
        logging.info("Model card written: %s", paths["md"])
    except Exception as e:  # noqa: BLE001 - the model is pushed; the card is documentation
        logging.warning("No model card for %s: %s: %s", serving_path, type(e).__name__, e)


class AtomicPusherSpec(standard_component_specs.PusherSpec):
    """The stock Pusher's spec plus eval examples for the warmup requests."""

    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        warmup_requests.EXAMPLES_KEY: component_spec.ChannelParameter(
            type=standard_artifacts.Examples, optional=True
        ),
    }


class AtomicPusher(base_component.BaseComponent):
    """Pusher with the atomic executor; given `examples`, every pushed version carries TF
    Serving warmup requests built from a few of their eval split."""

    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPusherExecutor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        push_destination: pusher_pb2.PushDestination,
        examples: types.BaseChannel | None = None,
        custom_config: dict | None = None,
    ) -> None:
        super().__init__(
            spec=AtomicPusherSpec(
                model=model,
                model_blessing=model_blessing,
                push_destination=push_destination,
                custom_config=json_utils.dumps(custom_config),
                examples=examples,
                pushed_model=types.Channel(type=standard_artifacts.PushedModel),
            )
        )
        self.with_id("Pusher")  # the stock node id, which reports, lineage and tests look up
