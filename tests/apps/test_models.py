"""The Models page's label actions under Streamlit's AppTest: promote and roll back from the page
change the real TF Serving model config file and the audit trail in ML Metadata exactly as
`mlops models promote | rollback` does, and bad input is an error box that changes nothing.

On copies of the shared small pipeline's pushed model (its version and an older copy) and store, so
the session fixture's files stay as they were. No model server answers on the configured port, so
the registry checks the disk only (tests/registry/test_registry.py covers the server check)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from ml_metadata import errors as mlmd_errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from streamlit.testing.v1 import AppTest
from tensorflow_serving.config import model_server_config_pb2

from apps.ui.settings import Settings
from tests import serving_models as sm
from tests.paths import PROJECT_ROOT

PAGE = PROJECT_ROOT / "apps" / "ui" / "views" / "models.py"
TIMEOUT = 180
ACTOR = "ui-tester@ci"


@pytest.fixture
def env(small_pipeline, tmp_path, monkeypatch):
    assert small_pipeline.exit_code == 0, "the shared small pipeline run failed"
    pushed = sorted(p for p in Path(small_pipeline.serving_model_dir).iterdir() if p.name.isdigit())
    assert pushed, "the small pipeline pushed nothing"
    base = tmp_path / "serving_model" / small_pipeline.config.model_name
    # The pushed version (newest, so the page's lineage section finds it in the store) and an
    # older copy of it.
    pushed_version = int(pushed[-1].name)
    for v in (pushed_version - 1, pushed_version):
        shutil.copytree(pushed[-1], base / str(v))
    metadata = tmp_path / "metadata.db"
    shutil.copy(small_pipeline.metadata_path, metadata)
    settings = Settings(
        metadata=str(metadata),
        pipeline_name=small_pipeline.config.pipeline_name,
        model_name=small_pipeline.config.model_name,
        serving_dir=str(base),
        model_config=str(tmp_path / "serving_model" / "models.config"),
        rest_port=sm.free_port(),
        grpc_port=sm.free_port(),
    )
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLOPS_ACTOR", ACTOR)
    return settings, (pushed_version - 1, pushed_version)


def _page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _submit(at: AppTest, form: str, **fields: str) -> AppTest:
    for key, value in fields.items():
        widget = [w for w in list(at.text_input) + list(at.text_area) if w.key == f"{form}_{key}"]
        assert widget, f"no field {form}_{key} on the page"
        widget[0].input(value)
    at.button(key=f"{form}_submit").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error if "no model server answers" not in e.value]


def _labels_in_config(settings: Settings) -> dict[str, int]:
    """What TF Serving would read: the config file parsed as a ModelServerConfig."""
    path = Path(settings.model_config)
    if not path.exists():
        return {}
    config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == settings.model_name
    return dict(model.version_labels)


def _audit_trail(settings: Settings) -> list[dict[str, str]]:
    """The ModelAction executions in ML Metadata, read with MLMD's own API."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = settings.metadata
    store = metadata_store.MetadataStore(config)
    try:
        executions = store.get_executions_by_type("ModelAction")
    except mlmd_errors.NotFoundError:  # no ModelAction type yet: nothing recorded
        return []
    return [
        {k: v.string_value for k, v in e.properties.items()}
        for e in sorted(executions, key=lambda e: e.id)
    ]


def _shown(at: AppTest, columns: set[str]):
    for element in at.dataframe:
        if set(element.value.columns) == columns:
            return element.value
    raise AssertionError(f"no table with columns {columns}")


def test_promote_and_rollback_from_the_page(env):
    settings, (v0, v1) = env
    at = _page()
    _submit(at, "promote", version=str(v0), label="stable", reason="first release")
    assert _errors(at) == []
    assert any(f"promote stable: - -> {v0}" in s.value for s in at.success)
    assert _labels_in_config(settings) == {"stable": v0}

    _submit(at, "promote", version=str(v1), label="stable", reason="higher AUC on span 2")
    assert _errors(at) == []
    assert _labels_in_config(settings) == {"stable": v1}
    labels = _shown(at, {"label", "version"})
    assert dict(zip(labels["label"], labels["version"], strict=True)) == {"stable": v1}

    # A rollback without a reason is refused and changes nothing.
    _submit(at, "rollback", label="stable", reason="   ")
    assert any("reason is required" in e for e in _errors(at)), _errors(at)
    assert _labels_in_config(settings) == {"stable": v1}
    assert [a["action"] for a in _audit_trail(settings)] == ["promote", "promote"]

    _submit(at, "rollback", label="stable", reason="latency regression")
    assert _errors(at) == []
    assert _labels_in_config(settings) == {"stable": v0}

    trail = _audit_trail(settings)
    assert [(a["action"], a["from_version"], a["to_version"], a["reason"]) for a in trail] == [
        ("promote", "", str(v0), "first release"),
        ("promote", str(v0), str(v1), "higher AUC on span 2"),
        ("rollback", str(v1), str(v0), "latency regression"),
    ]
    assert {a["who"] for a in trail} == {f"{ACTOR} (web app)"}
    assert all(a["label"] == "stable" and a["model"] == settings.model_name for a in trail)
    # The page's history table shows the same entries, newest first, after the pipeline's push.
    history = _shown(at, {"when", "action", "label", "from_version", "to_version", "who", "reason"})
    assert list(history["action"])[:3] == ["rollback", "promote", "promote"]
    assert list(history["reason"])[:3] == [
        "latency regression",
        "higher AUC on span 2",
        "first release",
    ]
    assert "push" in set(history["action"])


@pytest.mark.parametrize(
    ("form", "fields", "message"),
    [
        ("promote", {"version": "424242", "reason": "x"}, "version 424242 is not on disk"),
        ("promote", {"version": "12ab", "reason": "x"}, "version must be a number"),
        ("promote", {"version": "²", "reason": "x"}, "version must be a number"),
        ("promote", {"reason": ""}, "reason is required"),
        ("promote", {"label": "st able;rm", "reason": "x"}, "invalid label"),
        ("promote", {"label": "", "reason": "x"}, "invalid label"),
        ("rollback", {"reason": "x"}, "unknown label 'stable'"),
        ("rollback", {"label": "canary", "reason": ""}, "reason is required"),
    ],
)
def test_bad_input_is_an_error_on_the_page_and_changes_nothing(env, form, fields, message):
    settings, _ = env
    at = _submit(_page(), form, **fields)
    assert any(message in e for e in _errors(at)), _errors(at)
    assert not at.success
    assert _labels_in_config(settings) == {}
    assert _audit_trail(settings) == []


def test_a_config_file_that_is_not_a_model_server_config_is_shown_not_raised(env):
    settings, (v0, _) = env
    Path(settings.model_config).write_text("model_config_list { config { name: ")
    at = _submit(_page(), "promote", version=str(v0), reason="x")
    assert _errors(at), "a broken config file must be reported on the page"
    assert Path(settings.model_config).read_text() == "model_config_list { config { name: "
    assert _audit_trail(settings) == []
