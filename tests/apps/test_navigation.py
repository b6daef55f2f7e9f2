"""The app as `mlops ui` runs it (apps/ui/app.py under Streamlit's AppTest, no pipeline needed):
every page by its URL path, the dataset switcher, the comparison's default runs."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from apps.ui import data
from apps.ui.app import PAGES
from apps.ui.settings import Settings
from metadata.locations import locations
from tests.paths import PROJECT_ROOT

APP = PROJECT_ROOT / "apps" / "ui" / "app.py"


@pytest.fixture
def app(tmp_path, monkeypatch) -> AppTest:
    """The app on a store that does not exist yet (every page says so, none raises)."""
    base = Settings(metadata=str(tmp_path / "metadata.db"), serving_dir=str(tmp_path / "taxi"))
    for key, value in base.to_env().items():
        monkeypatch.setenv(key, value)
    return AppTest.from_file(str(APP), default_timeout=120)


def test_the_root_opens_predict_and_the_sidebar_lists_every_dataset(app):
    app.run()
    assert not app.exception
    assert [t.value for t in app.title] == ["Predict"]
    [switcher] = app.sidebar.selectbox
    assert switcher.label == "Dataset" and switcher.value == "taxi"
    assert set(switcher.options) == {"taxi", "penguins"}


@pytest.mark.parametrize("script, title, url_path", PAGES)
def test_every_page_opens_by_its_path(app, script, title, url_path):
    app.switch_page(f"views/{script}").run()
    assert not app.exception, [e.value for e in app.exception]
    assert [t.value for t in app.title] == [title]
    assert "Page not found" not in " ".join(str(e.value) for e in app.error)


def test_switching_dataset_changes_what_the_pages_read(app, tmp_path):
    penguins = locations("penguins")
    app.switch_page("views/runs.py").run()
    assert "Pipeline `taxi_pipeline`" in app.caption[0].value
    app.sidebar.selectbox[0].select("penguins").run()
    assert app.query_params["dataset"] == ["penguins"]
    assert f"Pipeline `{penguins.pipeline_name}`" in app.caption[0].value
    app.switch_page("views/predict.py").run()
    assert f"Model `{penguins.model_name}`" in app.caption[0].value
    app.switch_page("views/models.py").run()
    # The serving dir is the started one's sibling: one serving root for every model.
    assert app.caption[0].value == str(tmp_path / penguins.model_name)
    app.sidebar.selectbox[0].select("taxi").run()
    assert "Model `taxi`" not in app.caption[0].value  # still on Models
    assert app.caption[0].value == str(tmp_path / "taxi")


def test_settings_for_another_dataset_keep_store_and_server():
    base = Settings(metadata="m.db", pipeline_name="taxi_small", serving_dir="/s/taxi", rest_port=1)
    assert base.for_dataset("taxi") is base  # the started dataset keeps its flags
    other = base.for_dataset("penguins")
    assert (other.metadata, other.rest_port) == ("m.db", 1)
    assert other.pipeline_name == "penguins_pipeline" and other.model_name == "penguins"
    assert other.serving_dir == os.path.join("/s", "penguins")
    assert other.schema_path == locations("penguins").schema_path


def test_comparison_opens_on_the_two_newest_completed_runs():
    runs = pd.DataFrame(
        {
            "run": ["r5", "r4", "r3", "r2", "r1"],  # newest first, as runs_table
            "status": ["running", "failed", "complete", "failed", "complete"],
        }
    )
    assert data.comparison_defaults(runs) == ("r1", "r3")
    only_one = runs.assign(status=["failed", "failed", "complete", "failed", "failed"])
    assert data.comparison_defaults(only_one) == ("r4", "r5")
