"""Models: versions on disk, what the server says about each, the version labels (promote and
roll back, with the audit trail), and a version's lineage."""

from __future__ import annotations

import streamlit as st

from apps.ui import data, labels, server
from apps.ui.common import settings, shown_errors
from registry.errors import RegistryError
from registry.versions import parse_version

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

st.subheader("Labels")
st.caption(
    f"Version labels in the TF Serving model config {labels.config_path(cfg)}; every change is "
    "checked and recorded (who, when, reason) as `mlops models promote | rollback` does."
)
promote_col, rollback_col = st.columns(2)
with promote_col.form("promote_form"):
    st.markdown("**Promote a version to a label**")
    promote_version = st.text_input(
        "Version", value=str(on_disk["version"].iloc[0]), key="promote_version"
    )
    promote_label = st.text_input("Label", value="stable", key="promote_label")
    promote_reason = st.text_area("Reason (required)", key="promote_reason")
    promote_clicked = st.form_submit_button("Promote", key="promote_submit")
with rollback_col.form("rollback_form"):
    st.markdown("**Roll a label back to its previous version**")
    rollback_label = st.text_input("Label", value="stable", key="rollback_label")
    rollback_reason = st.text_area("Reason (required)", key="rollback_reason")
    rollback_clicked = st.form_submit_button("Roll back", key="rollback_submit")
try:
    if promote_clicked:
        version = parse_version(promote_version)
        st.success(labels.describe(labels.promote(cfg, version, promote_label, promote_reason)))
    if rollback_clicked:
        st.success(labels.describe(labels.rollback(cfg, rollback_label, rollback_reason)))
except RegistryError as e:
    st.error(str(e))
try:
    st.dataframe(labels.labels_table(cfg), hide_index=True, key="labels")
    with st.expander("History: pushes and label changes, newest first"):
        st.dataframe(labels.history_table(cfg), hide_index=True, key="history")
except RegistryError as e:
    st.error(str(e))

st.subheader("Lineage")
version = st.selectbox("Version", [str(v) for v in on_disk["version"]], key="lineage_version")
with shown_errors():
    every_artifact = st.toggle(
        "Lineage graph: show every artifact (default: artifacts summarised on the edges)",
        key="every_artifact",
    )
    summary, dot = data.version_lineage(cfg.metadata, version, collapse=not every_artifact)
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
