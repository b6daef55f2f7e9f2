"""The TF Serving model config file, as the registry sees it: model_layout/model_config.py's
shared `models.config`, with its failures as RegistryError (one line, exit 1).

The file is a plain `ModelServerConfig` text proto, exactly what tensorflow_model_server takes
with --model_config_file, and holds every model of the serving root; `version_labels` of the
registry's own model is the only part the registry changes (base paths and version policies are
the operator's, other models' entries are left as they are). Writes are atomic and run under an
exclusive lock file beside it, so two promotions at once fail instead of racing, and a Pusher or
`mlops serve` adding its model waits for the change instead of losing it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from model_layout import model_config
from registry.errors import RegistryError

ModelServerConfig = model_config.ModelServerConfig
HEADER = model_config.HEADER
write = model_config.write


def read(path: str) -> ModelServerConfig:
    """Parse the file; a hand-broken file is an error naming the file and the parse problem."""
    try:
        return model_config.read(path)
    except model_config.ModelConfigError as e:
        raise RegistryError(str(e)) from None


def new_config(model_name: str, base_path: str) -> ModelServerConfig:
    """A config for one model that loads every version on disk, so any of them can be labelled."""
    config = ModelServerConfig()
    model_config.add_entry(config, model_name, base_path)
    return config


def model_entry(config: ModelServerConfig, model_name: str, path: str):
    model = model_config.find(config, model_name)
    if model is None:
        raise RegistryError(f"model config file {path} has no model named {model_name!r}")
    return model


def own_entry(config: ModelServerConfig, model_name: str, base_path: str):
    """The model's entry, added (all versions, at `base_path`) when the shared file lacks it."""
    return model_config.find(config, model_name) or model_config.add_entry(
        config, model_name, base_path
    )


def labels(config: ModelServerConfig, model_name: str, path: str) -> dict[str, int]:
    """The model's labels; none when the shared file has no entry for it yet."""
    model = model_config.find(config, model_name)
    return dict(model.version_labels) if model is not None else {}


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold `<path>.lock` exclusively; a second holder fails at once with a clear error."""
    try:
        with model_config.locked(path):
            yield
    except model_config.LockHeld:
        raise RegistryError(
            f"another `mlops models` change holds {path}{model_config.LOCK_SUFFIX}; "
            "try again when it finishes"
        ) from None
