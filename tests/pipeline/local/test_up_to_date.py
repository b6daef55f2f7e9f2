"""The up-to-date check (pipeline/local/up_to_date.py): what makes a re-run stop before TFX, and
what
sends it through TFX again. The end-to-end case (a real re-run of the small pipeline) is in
tests/pipeline/test_end_to_end.py."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from pipeline.ingest.sources import SourceSpec
from pipeline.local import up_to_date
from pipeline.testing.samples import small_config, write_sample
from tests.paths import PROJECT_ROOT


@pytest.fixture
def setup(tmp_path: Path, monkeypatch):
    """A config over a sample span, a project copy holding its code, a SQLite store file."""
    project = tmp_path / "project"
    for name in ("modules", "pipeline", "datasets", "schema"):
        shutil.copytree(
            PROJECT_ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    monkeypatch.setattr(up_to_date, "PROJECT_ROOT", project)
    config = small_config(
        tmp_path / "run",
        write_sample(tmp_path / "data", rows=50),
        schema_path=str(project / "schema" / "schema.pbtxt"),
    )
    store = tmp_path / "run" / "metadata.db"
    store.parent.mkdir(parents=True)
    sqlite3.connect(store).execute("create table t (x)").connection.commit()
    return config, project, str(store)


def _complete(config, store: str) -> str:
    """What a completed run leaves: its record."""
    inputs = up_to_date.inputs_fingerprint(config)
    assert up_to_date.save(config, inputs, store, "run-1", "Run run-1\nBlessed: yes\n")
    return inputs


def test_nothing_changed_is_up_to_date_and_says_why_nothing_was_pushed(setup):
    config, _, store = setup
    _complete(config, store)
    os.makedirs(os.path.join(config.model_serving_dir, "1700000000"))
    # A pushed version is part of the state: the run that pushed it records it.
    _complete(config, store)
    unchanged = up_to_date.check(config, up_to_date.inputs_fingerprint(config), store)
    assert unchanged is not None and unchanged.run_id == "run-1"
    text = up_to_date.describe(config, unchanged)
    assert "up to date" in text and "Blessed: yes" in text
    assert text.splitlines()[-1] == (
        "Push: not pushed: nothing changed since run run-1; the served model is "
        + os.path.join(config.model_serving_dir, "1700000000")
    )


@pytest.mark.parametrize(
    "change",
    [
        "touch a data file",
        "add a span",
        "edit a module",
        "add a module file",
        "edit the schema",
        "change a setting",
        "write to the metadata store",
        "push a version",
        "remove the served versions",
        "damage the record",
    ],
)
def test_any_change_sends_the_run_through_tfx(setup, change):
    config, project, store = setup
    _complete(config, store)
    os.makedirs(os.path.join(config.model_serving_dir, "1700000000"))
    _complete(config, store)
    data_file = Path(config.data_root, "span-1", "data.csv")
    if change == "touch a data file":
        stat = data_file.stat()
        os.utime(data_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    elif change == "add a span":
        write_sample(Path(config.data_root).parent / "more", rows=10)
        more = Path(config.data_root).parent / "more" / "span-1"
        shutil.copytree(more, Path(config.data_root, "span-2"))
    elif change == "edit a module":
        with open(project / "modules" / "model.py", "a") as f:
            f.write("\n")
    elif change == "add a module file":
        (project / "pipeline" / "extra.py").write_text("X = 1\n")
    elif change == "edit the schema":
        assert Path(config.schema_path).is_relative_to(project)  # the copy, not the checkout
        with open(config.schema_path, "a") as f:
            f.write("\n")
    elif change == "change a setting":
        config = dataclasses.replace(config, train_steps=config.train_steps + 1)
    elif change == "write to the metadata store":
        sqlite3.connect(store).execute("insert into t values (1)").connection.commit()
    elif change == "push a version":
        os.makedirs(os.path.join(config.model_serving_dir, "1700000001"))
    elif change == "remove the served versions":
        shutil.rmtree(config.model_serving_dir)
    elif change == "damage the record":
        up_to_date.record_path(config).write_text("{not json")
    assert up_to_date.check(config, up_to_date.inputs_fingerprint(config), store) is None


def test_what_cannot_be_fingerprinted_is_never_up_to_date(setup):
    config, _, store = setup
    _complete(config, store)
    assert up_to_date.inputs_fingerprint(dataclasses.replace(config, enable_cache=False)) is None
    database = SourceSpec(kind="postgresql", url="postgresql://u@h:5432/db", table="trips")
    assert up_to_date.inputs_fingerprint(dataclasses.replace(config, sources=(database,))) is None
    inputs = up_to_date.inputs_fingerprint(config)
    # A store that is not a SQLite file (PostgreSQL, MySQL): no state to compare.
    assert up_to_date.check(config, inputs, None) is None
    assert not up_to_date.save(config, inputs, None, "run-2", "")
    assert not up_to_date.record_path(config).exists()


def test_always_run_skips_the_check_and_is_not_itself_an_input(setup):
    config, _, store = setup
    inputs = _complete(config, store)
    always = dataclasses.replace(config, skip_unchanged=False)
    assert up_to_date.inputs_fingerprint(always) == inputs
    assert up_to_date.check(always, inputs, store) is None
    assert up_to_date.check(config, inputs, store) is not None


def test_a_started_run_forgets_the_record(setup):
    config, _, store = setup
    _complete(config, store)
    up_to_date.forget(config)
    assert up_to_date.check(config, up_to_date.inputs_fingerprint(config), store) is None


def test_an_unreadable_input_or_unwritable_record_falls_back_to_tfx(setup, monkeypatch):
    config, _, store = setup

    def unreadable(self):
        raise PermissionError("denied")

    with monkeypatch.context() as m:
        m.setattr(Path, "read_bytes", unreadable)
        assert up_to_date.inputs_fingerprint(config) is None
    inputs = up_to_date.inputs_fingerprint(config)
    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", lambda self, text: unreadable(self))
        assert not up_to_date.save(config, inputs, store, "run-1", "")
    assert up_to_date.check(config, inputs, store) is None
