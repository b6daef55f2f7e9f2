"""Data: per span, the statistics as charts, the anomalies and the drift measurements."""

from __future__ import annotations

import altair as alt
import streamlit as st

from apps.ui import data
from apps.ui.common import settings, shown_errors

cfg = settings()
st.title("Data")

with shown_errors():
    spans = data.spans(cfg.metadata, cfg.pipeline_name)
span = st.selectbox("Span", list(spans), index=len(spans) - 1, key="span")
with shown_errors():
    detail = data.run_detail(cfg.metadata, cfg.pipeline_name, spans[span])
st.caption(f"as ingested by run {detail.run_id}")

st.subheader("Anomalies")
if detail.anomalies.empty:
    st.success("no anomalies against the schema")
else:
    st.error(f"{len(detail.anomalies)} anomalies against the schema")
    st.dataframe(detail.anomalies, hide_index=True, key="anomalies")

st.subheader("Drift")
if detail.previous_span is None:
    st.info("no earlier span to compare with: drift is measured from the second span on")
else:
    # A feature is measured twice (the sample-size-aware test and the schema's comparator).
    drifted = detail.drift.loc[detail.drift["exceeded"], "feature"].nunique()
    msg = f"compared with span {detail.previous_span}: {drifted} feature(s) beyond threshold"
    (st.error if drifted else st.success)(msg)
    st.dataframe(detail.drift, hide_index=True, key="drift")
    if not detail.drift.empty:
        st.altair_chart(
            alt.Chart(detail.drift)
            .mark_bar()
            .encode(
                x=alt.X("distance:Q"),
                y=alt.Y("feature:N", sort="-x"),
                color=alt.Color("exceeded:N"),
                tooltip=["feature", "comparator", "distance", "threshold"],
            ),
            width="stretch",
        )

st.subheader("Statistics")
split = st.selectbox("Split", detail.statistics_splits, key="split")
with shown_errors():
    stats = data.feature_statistics(detail.statistics_uri, split)
st.dataframe(
    [
        {"feature": f.name, "kind": f.kind, "count": f.count, "missing": f.missing, **f.summary}
        for f in stats
    ],
    hide_index=True,
    key="statistics",
)
blank = sorted(
    (f for f in stats if f.missing), key=lambda f: f.missing / (f.count + f.missing), reverse=True
)
if blank:
    st.markdown(
        "Most missing (absent or blank): "
        + ", ".join(
            f"{f.name} {f.missing:,} of {f.count + f.missing:,}"
            f" ({f.missing / (f.count + f.missing):.1%})"
            for f in blank[:3]
        )
    )
names = [f.name for f in stats]
feature = st.selectbox("Feature", names, key="feature")
chosen = next(f for f in stats if f.name == feature)
if chosen.kind == "numeric":
    st.altair_chart(
        alt.Chart(chosen.chart)
        .mark_bar()
        .encode(
            x=alt.X("low:Q", bin="binned", title=feature),
            x2="high:Q",
            y="count:Q",
            tooltip=["low", "high", "count"],
        ),
        width="stretch",
    )
else:
    st.altair_chart(
        alt.Chart(chosen.chart.head(20))
        .mark_bar()
        .encode(
            x="frequency:Q",
            y=alt.Y("value:N", sort="-x"),
            tooltip=["value", "frequency"],
        ),
        width="stretch",
    )
