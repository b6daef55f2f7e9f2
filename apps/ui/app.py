"""The Streamlit entry point: `streamlit run apps/ui/app.py` (what `mlops ui` starts)."""

from __future__ import annotations

import os

import streamlit as st

_PAGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "views")

st.set_page_config(page_title="TFX taxi MLOps", layout="wide")
page = st.navigation(
    [
        st.Page(
            os.path.join(_PAGES, "predict.py"), title="Predict", url_path="predict", default=True
        ),
        st.Page(os.path.join(_PAGES, "runs.py"), title="Runs", url_path="runs"),
        st.Page(os.path.join(_PAGES, "models.py"), title="Models", url_path="models"),
        st.Page(os.path.join(_PAGES, "datasets.py"), title="Data", url_path="data"),
        st.Page(os.path.join(_PAGES, "serving.py"), title="Serving", url_path="serving"),
    ]
)
page.run()
