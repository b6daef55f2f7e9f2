"""Predict: one row from a form generated from the training data, or a whole CSV file."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from apps.ui import data, server
from apps.ui.common import settings, shown_errors
from explain import shapley


def _float(value: object) -> float | None:
    return None if value is None else float(value)


cfg = settings()
spec = None
with shown_errors():
    spec = cfg.spec()
st.title("Predict")
st.caption(
    f"Model `{cfg.model_name}` on the model server at {cfg.server_host} "
    f"(REST :{cfg.rest_port}, gRPC :{cfg.grpc_port})."
)

protocol = st.radio("Protocol", ["REST", "gRPC"], horizontal=True, key="protocol").lower()
port = cfg.grpc_port if protocol == "grpc" else cfg.rest_port
with st.expander("Version or label (default: the latest version)"):
    version_text = st.text_input("Version", key="version")
    label = st.text_input("Label", key="label")
version = int(version_text) if version_text.strip().isdigit() else None
if version_text.strip() and version is None:
    st.error(f"version must be a number, not {version_text!r}")
    st.stop()

single, batch = st.tabs(["One row" if spec.derive is None else "One trip", "Batch (CSV)"])

with single:
    fields: list[data.FieldSpec] = []
    with shown_errors(stop=False):
        fields = data.form_fields(cfg.metadata, cfg.pipeline_name, cfg.dataset)
    submitted = False
    if fields:
        with st.form("predict"):
            row: dict[str, object] = {}
            columns = st.columns(3)
            for i, f in enumerate(fields):
                col = columns[i % 3]
                if f.kind == "choice":
                    options = list(f.choices) or [""]
                    row[f.name] = col.selectbox(f.name, options, key=f"f_{f.name}")
                elif f.kind == "int":
                    row[f.name] = col.number_input(
                        f.name,
                        min_value=f.minimum,
                        max_value=f.maximum,
                        value=f.initial,
                        step=1,
                        key=f"f_{f.name}",
                    )
                else:
                    row[f.name] = col.number_input(
                        f.name,
                        min_value=_float(f.minimum),
                        max_value=_float(f.maximum),
                        value=f.initial,
                        key=f"f_{f.name}",
                        format="%.6f",
                    )
            explain_col, permutations_col = st.columns(2)
            explain = explain_col.checkbox(
                "Explain: which inputs drove it", value=True, key="explain"
            )
            permutations = permutations_col.number_input(
                "Permutations (sampled Shapley)",
                min_value=1,
                max_value=64,
                value=shapley.DEFAULT_PERMUTATIONS,
                step=1,
                key="permutations",
            )
            submitted = st.form_submit_button("Predict")
    if submitted:
        p = None
        with shown_errors(stop=False):
            p = server.predict_one(
                row,
                protocol,
                cfg.server_host,
                port,
                cfg.rest_port,
                cfg.model_name,
                version,
                label,
                spec,
            )
    if submitted and p is not None and p.scores:
        st.metric(f"Predicted {spec.label}", p.predicted_class)
        st.dataframe(
            pd.DataFrame({"class": list(p.scores), "probability": list(p.scores.values())}),
            key="class_scores",
        )
    elif submitted and p is not None:
        what = f"{spec.label} = {spec.classes[-1]}" if spec.is_classification else spec.label
        st.metric(
            "Probability of a big tip"
            if spec.derive is not None
            else (f"Probability of {what}" if spec.is_classification else f"Predicted {what}"),
            f"{p.probability:.4f}",
        )
        st.success(
            f"answered by version {p.version}"
            + (f" (label {p.label})" if p.label else "")
            + f" over {p.protocol.upper()} in {p.latency_ms:.1f} ms"
        )
    if submitted and p is not None and explain:
        baseline = data.baseline_row(fields)
        class_index = (
            list(p.scores).index(p.predicted_class) if p.predicted_class is not None else None
        )
        why = None
        with shown_errors(stop=False):
            why = server.explain_one(
                row,
                baseline,
                protocol,
                cfg.server_host,
                port,
                cfg.model_name,
                int(p.version),
                None,
                spec,
                class_index,
                int(permutations),
            )
        if why is not None:
            what = (
                f"P({spec.label} = {p.predicted_class})"
                if class_index is not None
                else "the prediction"
            )
            st.subheader("Why: attributions")
            st.caption(
                f"Sampled Shapley values of {what} over {why.permutations} feature orderings"
                + (" (all of them: exact)" if why.exact else "")
                + f", {why.rows_scored} rows scored by version {p.version} in one request. "
                "Each is the feature's share of the difference from the baseline row (every "
                "feature at its typical training value: median, or most frequent); they add up "
                "to it."
            )
            cols = st.columns(3)
            cols[0].metric("Prediction", f"{why.prediction:.4f}")
            cols[1].metric("Baseline row", f"{why.baseline_prediction:.4f}")
            cols[2].metric("Sum of attributions", f"{why.total:+.4f}")
            table = server.attribution_frame(why, row, baseline)
            st.altair_chart(
                alt.Chart(table)
                .mark_bar()
                .encode(
                    x=alt.X("attribution:Q"),
                    y=alt.Y("feature:N", sort=list(table["feature"])),
                    color=alt.condition(
                        alt.datum.attribution > 0, alt.value("#2b8a3e"), alt.value("#c92a2a")
                    ),
                    tooltip=["feature", "value", "baseline", "attribution"],
                ),
                width="stretch",
            )
            st.dataframe(table, hide_index=True, key="attributions")

with batch:
    upload = st.file_uploader("CSV with a header row of raw features", type=["csv"])
    chunk_size = st.number_input("Rows per request", min_value=1, max_value=1000, value=100)
    if upload is not None:
        try:
            frame = server.read_upload(upload.getvalue(), upload.name, spec)
        except ValueError as e:
            st.error(str(e))
            st.stop()
        bar = st.progress(0.0, text="scoring")
        with shown_errors():
            scored, bad = server.score_frame(
                frame,
                protocol,
                cfg.server_host,
                port,
                cfg.model_name,
                chunk_size=int(chunk_size),
                progress=lambda f: bar.progress(f, text="scoring"),
                spec=spec,
            )
        st.success(f"scored {len(scored)} of {len(frame)} rows")
        if bad:
            st.warning(f"{len(bad)} row(s) could not be encoded and were skipped")
            st.dataframe(
                pd.DataFrame([{"line": b.line, "reason": b.reason} for b in bad]), key="bad_rows"
            )
        st.dataframe(scored, key="scored")
        st.download_button(
            "Download scored CSV",
            server.scored_csv(scored),
            file_name=upload.name.removesuffix(".csv") + "-scored.csv",
            mime="text/csv",
        )
