"""Model repository: which versions exist, which are loaded, which one a request gets.

It mirrors TF Serving's file-system source + availability-preserving manager: every poll lists the
numeric version directories under each base path, applies the model's version policy, loads what
is aspired and not yet loaded, and only then swaps the served set in one assignment. A version that
fails to load is recorded (END + error) and the versions already serving stay; in-flight requests
hold a reference to their Servable, so swapping never interrupts them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from model_layout import list_versions
from model_layout.config_rules import config_problem
from model_layout.custom_ops import register_ops_for
from serving.errors import ServingError, failed_precondition, invalid_argument, not_found

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State


@dataclass(eq=False)
class Servable:
    """One loaded model version; hashable by identity so batch queues can key on it."""

    name: str
    version: int
    path: str
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    functions: dict[str, Callable]
    handle: object = None  # the loaded SavedModel; keeps the functions' resources alive


@dataclass
class VersionStatus:
    state: int
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""

    @property
    def state_name(self) -> str:
        return State.Name(self.state)


class InvalidSavedModel(ValueError):
    """A version directory whose saved_model.pb cannot be served (empty, truncated, no 'serve')."""


def load_servable(name: str, version: int, path: str) -> Servable:
    """Load a TF2 SavedModel version; signature defs come from the proto, as TF Serving reads it."""
    import tensorflow as tf

    sm = saved_model_pb2.SavedModel()
    pb_path = os.path.join(path, "saved_model.pb")
    with open(pb_path, "rb") as f:
        sm.ParseFromString(f.read())
    # A 0-byte (or truncated) file parses as an empty SavedModel: say so, not IndexError.
    meta = next((m for m in sm.meta_graphs if "serve" in m.meta_info_def.tags), None)
    if meta is None:
        raise InvalidSavedModel(
            f"{pb_path} holds no MetaGraph tagged 'serve' "
            f"({os.path.getsize(pb_path)} bytes; empty or not a SavedModel)"
        )
    register_ops_for(path)  # TF-DF's ops, only for a decision-forest model
    handle = tf.saved_model.load(path, tags=["serve"])
    signature_defs = {k: v for k, v in meta.signature_def.items() if k in handle.signatures}
    functions = {k: handle.signatures[k] for k in signature_defs}
    return Servable(name, version, path, signature_defs, functions, handle)


def _fingerprint(path: str) -> object:
    """Every file under a version dir with its size and mtime: a version copied in steps (graph
    first, variables later) changes it with each step, so a failed load is retried after them."""
    entries = []
    try:
        for root, _dirs, files in os.walk(path):
            for name in files:
                p = os.path.join(root, name)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                entries.append((os.path.relpath(p, path), st.st_size, st.st_mtime_ns))
    except OSError:
        return None
    return tuple(sorted(entries))


@dataclass
class _Failure:
    fingerprint: object
    attempts: int
    retry_at: float  # monotonic time before which the version is not tried again

    BACKOFF_BASE = 0.5
    BACKOFF_MAX = 30.0

    @classmethod
    def after(cls, previous: _Failure | None, fingerprint: object) -> _Failure:
        attempts = (previous.attempts if previous else 0) + 1
        delay = min(cls.BACKOFF_MAX, cls.BACKOFF_BASE * 2 ** (attempts - 1))
        return cls(fingerprint, attempts, time.monotonic() + delay)

    def should_retry(self, fingerprint: object) -> bool:
        return fingerprint != self.fingerprint and time.monotonic() >= self.retry_at


@dataclass
class _Model:
    config: model_server_config_pb2.ModelConfig
    serving: dict[int, Servable] = field(default_factory=dict)  # replaced, never mutated
    status: dict[int, VersionStatus] = field(default_factory=dict)
    failed: dict[int, _Failure] = field(default_factory=dict)


def aspired_versions(policy: object, available: list[int]) -> set[int]:
    """Apply a FileSystemStoragePathSourceConfig.ServableVersionPolicy to the versions on disk."""
    kind = policy.WhichOneof("policy_choice") if policy is not None else None
    if kind == "all":
        return set(available)
    if kind == "specific":
        return set(policy.specific.versions) & set(available)
    n = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions > 0 else 1
    return set(sorted(available)[-n:])


class ModelRepository:
    """Owns loading, versions, labels and readiness for every configured model."""

    def __init__(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        poll_wait_seconds: float = 1.0,
        loader: Callable[[str, int, str], Servable] = load_servable,
        warmup: Callable[[Servable], None] | None = None,
    ) -> None:
        self._loader = loader
        self._warmup = warmup  # serving/warmup.py; raises to fail the load
        self._poll_wait = poll_wait_seconds
        self._lock = threading.RLock()  # serializes polls/reloads; readers never take it
        self._models: dict[str, _Model] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_change: Callable[[str, int, int], None] | None = None  # (model, version, state)
        self.reload_config(config)

    # ---- config & polling -------------------------------------------------------------------
    def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Replace the model set (HandleReloadConfigRequest, the config file watcher, start-up);
        new models load before returning. A config that breaks a rule changes nothing."""
        if config.HasField("custom_model_config"):
            raise invalid_argument("custom_model_config is not supported")
        names = [m.name for m in config.model_config_list.config]
        if len(set(names)) != len(names):
            raise invalid_argument(
                f"Illegal to list model names multiple times in config list: {names}"
            )
        with self._lock:
            self.check_config(config)
            models = {}
            for mc in config.model_config_list.config:
                if mc.model_platform and mc.model_platform != "tensorflow":
                    raise invalid_argument(f"Unsupported model_platform: {mc.model_platform}")
                old = self._models.get(mc.name)
                if old is not None and old.config.base_path == mc.base_path:
                    old.config = mc
                    models[mc.name] = old
                else:
                    models[mc.name] = _Model(config=mc)
            for name, old in self._models.items():
                if name not in models:
                    for v in old.serving:
                        self._set_status(name, old, v, VersionStatus(State.END))
            self._models = models
            self.poll_once()

    def check_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """model_layout.config_rules against what serves now: a label of a model already served
        from the same base path may only name an AVAILABLE version; a label of a model the config
        adds may name a version on disk (it loads during the reload, as TF Serving allows)."""

        def available(name: str) -> set[int]:
            model = self._models.get(name)
            new = next(m for m in config.model_config_list.config if m.name == name)
            if model is None or model.config.base_path != new.base_path:
                return set(list_versions(new.base_path))
            return {v for v, st in model.status.items() if st.state == State.AVAILABLE}

        broken = config_problem(
            ((m.name, m.version_labels) for m in config.model_config_list.config), available
        )
        if broken is not None:
            kind, message = broken
            raise (invalid_argument if kind == "invalid" else failed_precondition)(message)

    def poll_once(self) -> None:
        with self._lock:
            for name, model in list(self._models.items()):
                try:
                    self._poll_model(name, model)
                except Exception:  # one model's bad base path must not stop the others
                    log.exception("Polling model %s failed", name)

    def _poll_model(self, name: str, model: _Model) -> None:
        on_disk = list_versions(model.config.base_path)
        if not on_disk:
            log.warning(
                "No versions of servable %s found under base path %s", name, model.config.base_path
            )
        aspired = aspired_versions(
            model.config.model_version_policy
            if model.config.HasField("model_version_policy")
            else None,
            list(on_disk),
        )
        loaded = dict(model.serving)
        any_failed = False
        for v in sorted(aspired, reverse=True):
            if v in loaded:
                continue
            fp = _fingerprint(on_disk[v])
            failure = model.failed.get(v)
            if failure is not None and not failure.should_retry(fp):
                any_failed = True
                continue
            self._set_status(name, model, v, VersionStatus(State.LOADING))
            log.info("Loading servable: {name: %s version: %d}", name, v)
            try:
                servable = self._loader(name, v, on_disk[v])
                if self._warmup is not None:  # still LOADING, as in TF Serving
                    self._warmup(servable)
                loaded[v] = servable
            except Exception as e:  # noqa: BLE001 - any loader failure is reported, not fatal
                any_failed = True
                model.failed[v] = _Failure.after(failure, fp)
                msg = (
                    f"Failed to load servable {name} version {v} from {on_disk[v]}: "
                    f"{type(e).__name__}: {e}"
                )
                log.error(msg)
                self._set_status(
                    name, model, v, VersionStatus(State.END, grpc.StatusCode.UNKNOWN, msg)
                )
                continue
            model.failed.pop(v, None)
            log.info("Successfully loaded servable version {name: %s version: %d}", name, v)
        serving = {v: s for v, s in loaded.items() if v in aspired}
        if any_failed or not serving:
            # Availability preserving: never drop the versions serving now for ones that failed.
            keep = [v for v in model.serving if v not in serving]
            if len(serving) < len(aspired):
                for v in sorted(keep, reverse=True)[: len(aspired) - len(serving)]:
                    serving[v] = model.serving[v]
        unloaded = [v for v in model.serving if v not in serving]
        model.serving = serving  # the atomic switch
        for v in serving:
            self._set_status(name, model, v, VersionStatus(State.AVAILABLE))
        for v in unloaded:
            log.info("Unloaded servable version {name: %s version: %d}", name, v)
            self._set_status(name, model, v, VersionStatus(State.END))

    def _set_status(self, name: str, model: _Model, version: int, status: VersionStatus) -> None:
        if model.status.get(version) == status:
            return
        model.status = {**model.status, version: status}
        if self.on_change:
            self.on_change(name, version, status.state)

    def start_polling(self) -> None:
        """TF Serving semantics: a poll wait <= 0 means load once at start and never poll again."""
        if self._poll_wait <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self._poll_wait):
                self.poll_once()

        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # ---- lookups (lock-free: they read dicts that are only ever replaced) ----------------------
    def model_names(self) -> list[str]:
        return sorted(self._models)

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        model = self._models.get(name)
        if label:
            if model is None:
                raise not_found(f"Servable not found for request: Latest({name})")
            labels = model.config.version_labels
            if label not in labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if model is not None:
            serving = model.serving
            if version is None:
                if serving:
                    return serving[max(serving)]
            elif version in serving:
                return serving[version]
        if version is None:
            raise not_found(f"Servable not found for request: Latest({name})")
        raise not_found(f"Servable not found for request: Specific({name}, {version})")

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[tuple[int, VersionStatus]]:
        model = self._models.get(name)
        if model is None or not model.status:
            raise not_found(f"Could not find any versions of model {name}")
        if label:
            if label not in model.config.version_labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = model.config.version_labels[label]
        statuses = model.status
        if version is not None:
            if version not in statuses:
                raise not_found(f"Could not find version {version} of model {name}")
            return [(version, statuses[version])]
        return sorted(statuses.items(), reverse=True)

    def version_labels(self) -> dict[str, dict[str, int]]:
        """model -> {label: version} as configured (the version-label metric reads it)."""
        return {name: dict(m.config.version_labels) for name, m in self._models.items()}

    def labels_of(self, name: str) -> Mapping[str, int] | None:
        """The model's configured version labels (read-only), None for an unknown model."""
        model = self._models.get(name)
        return None if model is None else model.config.version_labels

    def ready(self) -> bool:
        return all(m.serving for m in self._models.values())


__all__ = [
    "ModelRepository",
    "Servable",
    "ServingError",
    "State",
    "VersionStatus",
    "list_versions",
    "load_servable",
]
