"""promote / rollback / retire / list / history: the served state and its audit trail together.

Each change runs under the config file's lock: check everything first (config parses, version
on disk, loaded by the server when one answers, label rules), then write the config atomically,
then record the action in ML Metadata; if recording fails the old config text is put back, so
the file never holds a change the history does not.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from registry import config_file, server_state, versions
from registry.errors import RegistryError
from registry.store import Action, RegistryStore, utc_iso, who_am_i


@dataclass
class Registry:
    """One model: its base path (as this machine sees it), config file, store and server."""

    base_path: str
    config_path: str
    metadata: str
    model_name: str
    server: str | None = None

    # ---- helpers -------------------------------------------------------------------------------
    def store(self) -> RegistryStore:
        return RegistryStore(self.metadata)

    def config(self):
        """The config file's content; a new one-model config (all versions) until it exists."""
        if not os.path.exists(self.config_path):
            return config_file.new_config(self.model_name, self.base_path)
        return config_file.read(self.config_path)

    def labels(self) -> dict[str, int]:
        return config_file.labels(self.config(), self.model_name, self.config_path)

    def _version_on_disk(self, version: int) -> str:
        path = versions.on_disk(self.base_path).get(version)
        if path is None:
            where = " (it is archived)" if version in versions.archived(self.base_path) else ""
            raise RegistryError(f"version {version} is not on disk under {self.base_path}{where}")
        return path

    def _check_loaded(self, version: int) -> None:
        status = server_state.model_status(self.server, self.model_name, versions=(version,))
        if status is not None and status.states.get(version) != "AVAILABLE":
            why = "" if status.ready else f" (the model is not ready: {status.reason})"
            raise RegistryError(
                f"version {version} is {status.state(version)} on the server at "
                f"{self.server}{why}; a label may only point at a loaded version"
            )

    def _artifact_for(
        self, rs: RegistryStore, version: int | None, where: str | None = None
    ) -> int | None:
        """The PushedModel artifact id of a version on disk (None when MLMD has none)."""
        if version is None:
            return None
        marker = versions.push_marker(where or os.path.join(self.base_path, str(version)))
        return rs.pushed_model_for(str(version), marker.get("model_uri"))

    def _set_label(
        self, label: str, version: int, action: str, reason: str, who: str | None = None
    ) -> Action:
        if not label or not label.replace("-", "").replace("_", "").isalnum():
            raise RegistryError(f"invalid label {label!r}: use letters, digits, '-' or '_'")
        with config_file.locked(self.config_path):
            return self._set_label_locked(label, version, action, reason, who)

    def _set_label_locked(
        self, label: str, version: int, action: str, reason: str, who: str | None = None
    ) -> Action:
        config = self.config()
        entry = config_file.own_entry(config, self.model_name, self.base_path)
        self._version_on_disk(version)
        self._check_loaded(version)
        previous = entry.version_labels.get(label)
        if previous == version:
            raise RegistryError(f"label {label} already points at version {version}")
        rs = self.store()
        old_text = open(self.config_path).read() if os.path.exists(self.config_path) else None
        entry.version_labels[label] = version
        config_file.write(self.config_path, config)
        now = utc_iso(_now_millis())
        record = Action(
            action=action,
            when=now,
            who=who or who_am_i(),
            model=self.model_name,
            label=label,
            from_version=str(previous or ""),
            to_version=str(version),
            reason=reason,
        )
        try:
            return rs.record(
                record,
                {"to": self._artifact_for(rs, version), "from": self._artifact_for(rs, previous)},
            )
        except Exception as e:
            _restore(self.config_path, old_text)
            raise RegistryError(
                f"could not record the change in ML Metadata, reverted: {e}"
            ) from None

    # ---- commands ------------------------------------------------------------------------------
    def promote(self, version: int, label: str, reason: str, who: str | None = None) -> Action:
        """Point `label` at `version`; `who` defaults to who_am_i() (the CLI's user)."""
        if not reason.strip():
            raise RegistryError("--reason must say why (it goes into the audit trail)")
        return self._set_label(label, version, "promote", reason, who)

    def rollback(self, label: str, reason: str, who: str | None = None) -> Action:
        """Back to the version that held `label` before the current one (from the history)."""
        with config_file.locked(self.config_path):
            return self._rollback_locked(label, reason, who)

    def _rollback_locked(self, label: str, reason: str, who: str | None = None) -> Action:
        current = self.labels().get(label)
        if current is None:
            raise RegistryError(
                f"unknown label {label!r}: no version holds it in {self.config_path}"
            )
        holders: list[int] = []  # the label's holders, as a stack: promote pushes, rollback pops
        for action in self.store().actions(self.model_name):
            if action.label != label:
                continue
            if action.action == "promote":
                holders.append(int(action.to_version))
            elif action.action == "rollback" and holders:
                holders.pop()
        if holders and holders[-1] == current:
            holders.pop()
        if not holders:
            raise RegistryError(f"no earlier version held label {label!r}; nothing to roll back to")
        reason = reason or f"roll back from {current}"
        return self._set_label_locked(label, holders[-1], "rollback", reason, who)

    def retire(self, version: int, reason: str) -> Action:
        with config_file.locked(self.config_path):
            labelled = sorted(k for k, v in self.labels().items() if v == version)
            if labelled:
                raise RegistryError(
                    f"version {version} is labelled {', '.join(labelled)}; move the label first"
                )
            self._version_on_disk(version)
            rs = self.store()
            artifact_id = self._artifact_for(rs, version)
            target = versions.archive(self.base_path, version)
            record = Action(
                action="retire",
                when=utc_iso(_now_millis()),
                who=who_am_i(),
                model=self.model_name,
                from_version=str(version),
                reason=reason or f"archived to {target}",
            )
            return rs.record(record, {"retired": artifact_id})

    def history(self) -> list[Action]:
        """Audit records and pipeline pushes of this model, oldest first."""
        rs = self.store()
        known = {str(v) for v in versions.on_disk(self.base_path)} | {
            str(v) for v in versions.archived(self.base_path)
        }
        base = os.path.abspath(self.base_path)
        pushes = [
            p
            for p in rs.pushes()
            if p.to_version in known or os.path.dirname(os.path.abspath(p.path)) == base
        ]
        for p in pushes:
            p.model = self.model_name
        return sorted(
            pushes + rs.actions(self.model_name), key=lambda a: (a.millis, a.action != "push")
        )

    def list(self) -> list[dict[str, Any]]:
        from metadata.model_facts import pushed_facts

        labels = self.labels()
        on_disk = versions.on_disk(self.base_path)
        status = server_state.model_status(self.server, self.model_name, versions=on_disk)
        try:
            rs = self.store()
        except RegistryError:
            rs = None
        rows = []
        for version, path in sorted(on_disk.items(), reverse=True):
            marker = versions.push_marker(path)
            row: dict[str, Any] = {
                "version": version,
                "path": path,
                "pushed_at": utc_iso(int(marker["pushed_at"] * 1000))
                if "pushed_at" in marker
                else "",
                "labels": sorted(k for k, v in labels.items() if v == version),
                "server_state": None if status is None else status.state(version),
            }
            artifact_id = self._artifact_for(rs, version) if rs else None
            if artifact_id is not None:
                f = pushed_facts(rs.metadata, artifact_id)
                ev = f.get("evaluation") or {}
                metrics = ev.get("metrics") or {}
                row.update(
                    {
                        "run": f.get("run", ""),
                        "span": f.get("span"),
                        "auc": metrics.get("auc"),
                        "accuracy": metrics.get("binary_accuracy", metrics.get("accuracy")),
                        "blessed": ev.get("blessed"),
                        "baseline_model": (ev.get("baseline_model") or {}).get("id"),
                        "pushed_model_artifact": artifact_id,
                    }
                )
            rows.append(row)
        return rows

    def card_path(self, version: int, ext: str) -> str:
        path = versions.on_disk(self.base_path).get(version) or versions.archived(
            self.base_path
        ).get(version)
        if path is None:
            raise RegistryError(
                f"version {version} is not on disk under {self.base_path} or its archive"
            )
        card = versions.card_path(path, ext)
        if not os.path.isfile(card):
            raise RegistryError(f"version {version} has no model card ({card})")
        return card


def _now_millis() -> int:

    return int(time.time() * 1000)


def _restore(path: str, text: str | None) -> None:
    if text is None:
        os.unlink(path)
    else:
        with open(path + ".restore", "w") as f:
            f.write(text)
        os.replace(path + ".restore", path)
