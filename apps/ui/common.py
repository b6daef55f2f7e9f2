"""Page helpers: the settings (of the dataset chosen in the sidebar), and turning known failures
into a readable message."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import streamlit as st

from apps.ui.data import DataUnavailable
from apps.ui.server import ServerUnavailable
from apps.ui.settings import Settings

# Session state (and URL query parameter) holding the dataset the switcher chose.
DATASET_KEY = "dataset"


def settings() -> Settings:
    """The app's settings for the dataset chosen in the sidebar (app.py's switcher); a page run
    on its own (AppTest) gets the dataset the app was started with."""
    base = Settings.from_env()
    return base.for_dataset(st.session_state.get(DATASET_KEY, base.dataset))


def dataset_switcher() -> str:
    """The sidebar's dataset selectbox: every dataset under datasets/. The choice is kept in
    session state across pages and in the URL (`?dataset=penguins`), so a page's URL opens it
    on that dataset."""
    base = Settings.from_env()
    names = base.datasets()
    if DATASET_KEY not in st.session_state:
        asked = st.query_params.get(DATASET_KEY)
        st.session_state[DATASET_KEY] = asked if asked in names else base.dataset
    chosen = st.sidebar.selectbox("Dataset", names, key=DATASET_KEY, on_change=_forget_choices)
    st.query_params[DATASET_KEY] = chosen
    return chosen


def _forget_choices() -> None:
    """A new dataset starts the pages afresh: a run, span or feature chosen for the previous
    dataset names nothing in this one."""
    for key in list(st.session_state):
        if key != DATASET_KEY:
            del st.session_state[key]


@contextlib.contextmanager
def shown_errors(stop: bool = True) -> Iterator[None]:
    """Show a store or server failure as an error box (never a traceback); by default the rest
    of the page is skipped, since it depends on what failed."""
    try:
        yield
    except (DataUnavailable, ServerUnavailable) as e:
        st.error(str(e))
        if stop:
            st.stop()
