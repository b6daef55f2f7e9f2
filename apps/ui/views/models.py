"""Models: versions on disk, what the server says about each, and a version's lineage."""

from __future__ import annotations

import streamlit as st

from apps.ui import data, server
from apps.ui.common import settings, shown_errors

cfg = settings()
st.title("Models")

st.subheader("Versions on disk")
st.caption(cfg.serving_dir)
on_disk = data.versions_on_disk(cfg.serving_dir)
if on_disk.empty:
    st.warning(f"no model has been pushed to {cfg.serving_dir} yet: run the pipeline (`make run`)")
    st.stop()
st.dataframe(on_disk, hide_index=True, key="on_disk")

st.subheader("What the model server reports")
with shown_errors(stop=False):
    status = server.version_status(cfg.server_host, cfg.rest_port, cfg.model_name, cfg.labels)
    st.dataframe(status, hide_index=True, key="server_status")

st.subheader("Lineage")
version = st.selectbox("Version", [str(v) for v in on_disk["version"]], key="lineage_version")
with shown_errors():
    summary, dot = data.version_lineage(cfg.metadata, version)
pushed = summary.get("pushed", {})
evaluation = next(iter(summary.get("evaluation", [])), {})
inputs = summary.get("inputs", [])
cols = st.columns(3)
cols[0].metric("Pushed version", str(pushed.get("version", "-")))
cols[1].metric("Blessed", "yes" if evaluation.get("blessed") else "no")
cols[2].metric("Trained on span", ", ".join(str(i.get("span")) for i in inputs) or "-")
for item in inputs:
    st.markdown(
        f"Data: span {item.get('span')} from `{item.get('input_base')}` "
        f"({len(item.get('files', []))} file(s))"
    )
if evaluation.get("metrics"):
    st.markdown("Evaluation metrics that gated it")
    st.dataframe(
        {"metric": list(evaluation["metrics"]), "value": list(evaluation["metrics"].values())},
        hide_index=True,
        key="lineage_metrics",
    )
hp = summary.get("hyperparameters", {}).get("tuned")
if hp:
    st.markdown("Hyperparameters")
    st.json(hp)
st.graphviz_chart(dot, width="stretch")
with st.expander("Lineage summary (JSON)"):
    st.json(summary)
