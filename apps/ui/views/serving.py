"""Serving: live request rates, latency percentiles and errors; skew of logged requests."""

from __future__ import annotations

import streamlit as st

from apps.ui import data, server
from apps.ui.common import settings, shown_errors

cfg = settings()
st.title("Serving")
st.caption(f"{cfg.server_host}:{cfg.rest_port}{server.METRICS_PATH}")


@st.fragment(run_every=5 if st.session_state.get("live", False) else None)
def live() -> None:
    try:
        sample = server.scrape(cfg.server_host, cfg.rest_port)
    except server.ServerUnavailable as e:  # the skew report below works without a server
        st.error(str(e))
        return
    before = st.session_state.get("previous_sample")
    st.session_state["previous_sample"] = sample
    requests = sample.requests
    total = requests["count"].sum() if not requests.empty else 0
    errors = requests[requests["status"] != "OK"] if not requests.empty else requests
    cols = st.columns(3)
    cols[0].metric("Requests (since start)", int(total))
    cols[1].metric("Errors (since start)", int(errors["count"].sum()) if not errors.empty else 0)
    if before is not None:
        r = server.rates(before, sample)
        cols[2].metric("Requests/s (last interval)", f"{r['per_second'].sum():.2f}")
    else:
        cols[2].metric("Requests/s (last interval)", "-")
        st.caption("rates appear from the second refresh on")
    st.markdown("Requests by model, version, method and status")
    st.dataframe(requests, hide_index=True, key="requests")
    st.markdown("Errors by model and version")
    st.dataframe(
        errors.groupby(["model_name", "version", "status"], as_index=False)["count"].sum()
        if not errors.empty
        else errors,
        hide_index=True,
        key="errors",
    )
    st.markdown("Latency percentiles (since the server started)")
    st.dataframe(server.latency_percentiles(sample), hide_index=True, key="latency")


st.toggle("Refresh every 5 s", key="live")
live()

st.subheader("Training/serving skew")
if not cfg.request_log_dir:
    st.info(
        "Request logging is off: start the server with `mlops serve --request_log_dir DIR` "
        "and the app with `mlops ui --request-log-dir DIR` to see the skew of live requests."
    )
elif st.button("Check skew of the logged requests", key="check_skew"):
    with shown_errors(stop=False), st.spinner("computing statistics of the logged requests"):
        report = data.skew_report(
            cfg.metadata, cfg.pipeline_name, cfg.request_log_dir, cfg.schema_path
        )
        skewed = report["skew"].loc[report["skew"]["exceeded"], "feature"].nunique()
        st.markdown(f"{report['files']} request file(s) against {report['statistics']}")
        (st.error if skewed else st.success)(f"{skewed} feature(s) skewed beyond threshold")
        st.dataframe(report["skew"], hide_index=True, key="skew")
        st.markdown(f"Request anomalies (SERVING environment): {len(report['anomalies'])}")
        st.dataframe(report["anomalies"], hide_index=True, key="request_anomalies")
