"""The one TF Serving model config file per serving root: `<serving root>/models.config`.

Every model pushed under a serving root (`<root>/<model>/<version>/`) has one entry in the
`model_config_list` of `<root>/models.config`, a plain `ModelServerConfig` text proto that
tensorflow_model_server takes with --model_config_file. Several writers share it: the Pusher adds
its model's entry after a push, `mlops serve` with no model flags adds every pushed model's entry,
and `mlops models` / the web app change one model's `version_labels`. Each of them edits only its
own model's entry and keeps the others, under an exclusive lock file beside the config, and
replaces the file atomically (temp file in the same directory, fsync, os.replace), so a server
polling the file reads the old or the new text, never half of one, and no writer loses another's
change. The proto comes from tensorflow-serving-api (protobuf only, no TensorFlow), so this stays
at the bottom of the layering with the rest of the serving layout.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator, Mapping

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

ModelServerConfig = model_server_config_pb2.ModelServerConfig
CONFIG_NAME = "models.config"
LOCK_SUFFIX = ".lock"
HEADER = (
    "# TF Serving ModelServerConfig: one entry per model under this serving root, kept by the\n"
    "# Pusher, `mlops serve` and `mlops models` (each edits its own model's entry only).\n"
    "# Works unchanged with tensorflow_model_server --model_config_file.\n"
)
# How long a writer that must not fail (the Pusher, `mlops serve`) waits for another's lock.
DEFAULT_LOCK_WAIT_SECONDS = 30.0


class ModelConfigError(ValueError):
    """A config file that cannot be read, parsed or locked; the message is one line."""


class LockHeld(ModelConfigError):
    """Another writer holds the config's lock (and this one chose not to wait)."""


def config_path(serving_root: str | os.PathLike) -> str:
    """Where a serving root's shared model config lives."""
    return os.path.join(os.path.abspath(serving_root), CONFIG_NAME)


def beside(base_path: str | os.PathLike) -> str:
    """The shared config of the serving root a model base path sits in (<root>/<model>)."""
    return config_path(os.path.dirname(os.path.abspath(base_path)))


def parse(text: str, path: str) -> ModelServerConfig:
    """Parse and check a config's text; errors name the file and the problem."""
    try:
        config = text_format.Parse(text, ModelServerConfig())
    except text_format.ParseError as e:
        raise ModelConfigError(
            f"model config file {path} is not a valid ModelServerConfig: {e}"
        ) from None
    if config.HasField("custom_model_config"):
        raise ModelConfigError(
            f"model config file {path} uses custom_model_config; use model_config_list"
        )
    names = [m.name for m in config.model_config_list.config]
    if len(set(names)) != len(names):
        raise ModelConfigError(f"model config file {path} lists a model name twice: {names}")
    return config


def read(path: str) -> ModelServerConfig:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise ModelConfigError(f"cannot read model config file {path}: {e.strerror}") from None
    return parse(text, path)


def find(config: ModelServerConfig, model_name: str):
    """The model's entry, or None."""
    for model in config.model_config_list.config:
        if model.name == model_name:
            return model
    return None


def add_entry(config: ModelServerConfig, model_name: str, base_path: str):
    """Append a model that loads every version on disk, so a label can point at any of them
    (`mlops models retire` moves old versions out of the base path to unload them)."""
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = os.path.abspath(base_path)
    model.model_platform = "tensorflow"
    model.model_version_policy.all.SetInParent()
    return model


def write(path: str, config: ModelServerConfig) -> None:
    """Atomically replace `path` with `config` (temp file in the same dir, fsync, rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    text = HEADER + text_format.MessageToString(config)
    fd, temp = tempfile.mkstemp(prefix=f".{CONFIG_NAME}-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def locked(path: str, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold `<path>.lock` exclusively. With wait_seconds 0 a second holder fails at once
    (LockHeld); otherwise it retries until the lock is free or the time is up."""
    lock_path = path + LOCK_SUFFIX
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    raise LockHeld(
                        f"another change to {path} holds {lock_path}; try again when it finishes"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def ensure_models(
    path: str,
    models: Mapping[str, str],
    wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
) -> list[str]:
    """Give every model in `models` (name -> base path) an entry in the config at `path`,
    creating the file when needed; existing entries (theirs and others') are kept as they are.
    Returns the names added; the file is rewritten only when one was."""
    with locked(path, wait_seconds):
        config = read(path) if os.path.exists(path) else ModelServerConfig()
        added = [name for name in models if find(config, name) is None]
        for name in added:
            add_entry(config, name, models[name])
        if added:
            write(path, config)
        return added
