"""The TF Serving model config file: read, check, and rewrite it atomically under a lock.

The file is a plain `ModelServerConfig` text proto, exactly what tensorflow_model_server takes
with --model_config_file; `version_labels` is the only part the registry changes (base paths and
version policies are the operator's). Writes go to a temp file in the same directory and are
renamed over the old one, so a server polling the file reads the old or the new text, never half
of one. An exclusive lock file beside it makes two promotions at once fail instead of racing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from registry.errors import RegistryError

ModelServerConfig = model_server_config_pb2.ModelServerConfig
HEADER = (
    "# TF Serving ModelServerConfig, maintained by `mlops models` (labels: promote/rollback).\n"
    "# Works unchanged with tensorflow_model_server --model_config_file.\n"
)


def read(path: str) -> ModelServerConfig:
    """Parse the file; a hand-broken file is an error naming the file and the parse problem."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise RegistryError(f"cannot read model config file {path}: {e.strerror}") from None
    try:
        config = text_format.Parse(text, ModelServerConfig())
    except text_format.ParseError as e:
        raise RegistryError(
            f"model config file {path} is not a valid ModelServerConfig: {e}"
        ) from None
    if config.HasField("custom_model_config"):
        raise RegistryError(
            f"model config file {path} uses custom_model_config; use model_config_list"
        )
    names = [m.name for m in config.model_config_list.config]
    if len(set(names)) != len(names):
        raise RegistryError(f"model config file {path} lists a model name twice: {names}")
    return config


def new_config(model_name: str, base_path: str) -> ModelServerConfig:
    """A config for one model that loads every version on disk, so any of them can be labelled."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = os.path.abspath(base_path)
    model.model_platform = "tensorflow"
    model.model_version_policy.all.SetInParent()
    return config


def model_entry(config: ModelServerConfig, model_name: str, path: str):
    for model in config.model_config_list.config:
        if model.name == model_name:
            return model
    raise RegistryError(f"model config file {path} has no model named {model_name!r}")


def labels(config: ModelServerConfig, model_name: str, path: str) -> dict[str, int]:
    return dict(model_entry(config, model_name, path).version_labels)


def write(path: str, config: ModelServerConfig) -> None:
    """Atomically replace `path` with `config` (temp file in the same dir, fsync, rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    text = HEADER + text_format.MessageToString(config)
    fd, temp = tempfile.mkstemp(prefix=".models.config-", dir=directory)
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
def locked(path: str) -> Iterator[None]:
    """Hold `<path>.lock` exclusively; a second holder fails at once with a clear error."""
    lock_path = path + ".lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RegistryError(
                    f"another `mlops models` change holds {lock_path}; try again when it finishes"
                ) from None
            raise
        yield
    finally:
        os.close(fd)
