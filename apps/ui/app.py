"""The Streamlit entry point: `streamlit run apps/ui/app.py` (what `mlops ui` starts).

Every page has its own URL (/predict, /runs, /models, /data, /serving). Streamlit serves the
default page at `/` only, so the default is a hidden page that sends `/` on to /predict: a
bookmarked /predict opens Predict instead of "Page not found".
"""

from __future__ import annotations

import os

import streamlit as st

from apps.ui.common import dataset_switcher

_PAGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "views")
# (file under views/, title, URL path), in the sidebar's order; the first is where `/` leads.
PAGES = (
    ("predict.py", "Predict", "predict"),
    ("runs.py", "Runs", "runs"),
    ("models.py", "Models", "models"),
    ("data.py", "Data", "data"),
    ("serving.py", "Serving", "serving"),
)

st.set_page_config(page_title="TFX MLOps", layout="wide")
pages = [st.Page(os.path.join(_PAGES, f), title=t, url_path=u) for f, t, u in PAGES]


def home() -> None:
    st.switch_page(pages[0])


page = st.navigation(
    [st.Page(home, title="Home", url_path="home", default=True, visibility="hidden"), *pages]
)
dataset_switcher()
page.run()
