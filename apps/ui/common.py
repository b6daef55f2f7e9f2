"""Page helpers: the settings, and turning known failures into a readable message."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import streamlit as st

from apps.ui.data import DataUnavailable
from apps.ui.server import ServerUnavailable
from apps.ui.settings import Settings


def settings() -> Settings:
    return Settings.from_env()


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
