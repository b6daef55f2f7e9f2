"""Runs: what ran, whether it shipped and why; one run in detail; two runs side by side."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from apps.ui import data
from apps.ui.common import settings, shown_errors

cfg = settings()
st.title("Runs")
st.caption(f"Pipeline `{cfg.pipeline_name}` in the metadata store {cfg.metadata}")

with shown_errors():
    runs = data.runs_table(cfg.metadata, cfg.pipeline_name)
st.dataframe(runs, hide_index=True, key="runs")

run_id = st.selectbox("Run", list(runs["run"]), key="run")
with shown_errors():
    detail = data.run_detail(cfg.metadata, cfg.pipeline_name, run_id)

st.subheader("Outcome")
st.markdown(f"**{detail.decision}**")
cols = st.columns(4)
cols[0].metric("Status", detail.status)
cols[1].metric("Span", "-" if detail.span is None else str(detail.span))
cols[2].metric("Duration (s)", f"{detail.duration_s:.1f}")
cols[3].metric("Blessed", {None: "-", True: "yes", False: "no"}[detail.blessed])

st.subheader("Components")
timeline = pd.DataFrame(
    [
        {
            "component": c.name,
            "state": c.state,
            "start": c.start,
            "end": c.end,
            "seconds": round(c.seconds, 2),
        }
        for c in detail.components
    ]
)
if not timeline.empty:
    st.altair_chart(
        alt.Chart(timeline)
        .mark_bar()
        .encode(
            x=alt.X("start:T", title="time"),
            x2="end:T",
            y=alt.Y("component:N", sort=list(timeline["component"])),
            color="state:N",
            tooltip=["component", "state", "seconds"],
        ),
        width="stretch",
    )
st.dataframe(
    timeline[["component", "state", "seconds"]] if not timeline.empty else timeline,
    hide_index=True,
    key="components",
)

st.subheader("Evaluation")
if detail.evaluation_uri is None:
    st.info("This run has no evaluation (it stopped before the Evaluator).")
else:
    checks = []
    for t in detail.thresholds:
        change = t.kind == "change vs baseline"
        value = detail.metrics.get(t.key + (" (change vs baseline)" if change else ""))
        failed = [
            c
            for c in detail.failed_checks["metric"]
            if c.startswith(t.key) and c.endswith("(change)") == change
        ]
        if change and value is None:
            passed = None  # no baseline to compare with (the first blessed model)
        else:
            passed = not failed
        checks.append(
            {
                "metric": t.metric,
                "threshold": f"{t.kind} {t.bound:g} {t.direction}".strip(),
                "value": value,
                "passed": passed,
            }
        )
    st.markdown("Overall metrics against the thresholds")
    st.dataframe(
        pd.DataFrame(checks, columns=["metric", "threshold", "value", "passed"]),
        hide_index=True,
        key="thresholds",
    )
    c = detail.comparison
    if c:
        better = "higher" if c["higher_is_better"] else "lower"
        st.markdown(
            f"Candidate vs baselines vs previous model: `{c['metric']}` on {c['eval_rows']} "
            f"eval rows ({better} is better)"
        )
        st.dataframe(data.model_comparison(detail), hide_index=True, key="model_comparison")
        st.markdown(
            f"Margin over the linear baseline: **{c['gain_over_linear']:+.4g}** (needed more "
            f"than {c['required_gain']:.4g}: {c['margin_source']}). Exported: the "
            f"{c['exported']} model. Decision: {c['decision']}."
        )
    importance = data.feature_importance(detail)
    if not importance.empty:
        m = detail.importance
        st.markdown(
            f"Feature importance: how much `{m['metric']}` gets worse when one feature is "
            f"shuffled across {m['eval_rows']} eval rows (permutation, {m['repeats']} seeded "
            "shuffles; about 0: the model does not use it)"
        )
        st.altair_chart(
            alt.Chart(importance)
            .mark_bar()
            .encode(
                x=alt.X("drop:Q", title=f"{m['metric']} drop"),
                y=alt.Y("feature:N", sort=list(importance["feature"])),
                tooltip=["feature", "drop", "std"],
            ),
            width="stretch",
        )
        st.dataframe(importance, hide_index=True, key="feature_importance")
    with shown_errors(stop=False):
        slices = data.slice_metrics(detail.evaluation_uri)
        plain = slices[~slices["is_diff"]]
        overall = plain[plain["feature"] == "overall"]
        if not overall.empty:
            st.markdown("Candidate vs the previous blessed model, every metric (TFMA, overall)")
            side = overall.pivot_table(
                index="metric", columns="model", values="value"
            ).reset_index()
            st.dataframe(side, hide_index=True, key="candidate_vs_baseline")
        per_slice = plain[plain["feature"] != "overall"]
        if not per_slice.empty:
            feature = st.selectbox(
                "Slice feature", sorted(per_slice["feature"].unique()), key="slice_feature"
            )
            metrics = sorted(per_slice["metric"].unique())
            metric = st.selectbox(
                "Metric",
                metrics,
                key="slice_metric",
                index=metrics.index("auc") if "auc" in metrics else 0,
            )
            chosen = per_slice[(per_slice["feature"] == feature) & (per_slice["metric"] == metric)]
            chosen = chosen.assign(slice_value=pd.to_numeric(chosen["slice"], errors="coerce"))
            st.altair_chart(
                alt.Chart(chosen)
                .mark_bar()
                .encode(
                    x=alt.X(
                        "slice:N",
                        sort=list(chosen.sort_values("slice_value")["slice"]),
                        title=feature,
                    ),
                    xOffset="model:N",
                    y=alt.Y("value:Q", title=metric),
                    color="model:N",
                    tooltip=["slice", "model", "value"],
                ),
                width="stretch",
            )
            st.dataframe(
                chosen.drop_duplicates(["slice", "model"])
                .pivot(index="slice", columns="model", values="value")
                .reset_index()
                .sort_values("slice", key=lambda s: pd.to_numeric(s, errors="coerce")),
                hide_index=True,
                key="slices",
            )

st.subheader("Compare two runs")
ids = list(runs["run"])
if len(ids) < 2:
    st.info("Only one run recorded: nothing to compare yet.")
else:
    default_a, default_b = data.comparison_defaults(runs)
    left, right = st.columns(2)
    run_a = left.selectbox("Run A", ids, index=ids.index(default_a), key="run_a")
    run_b = right.selectbox("Run B", ids, index=ids.index(default_b), key="run_b")
    status = dict(zip(runs["run"], runs["status"], strict=True))
    for name, chosen in (("A", run_a), ("B", run_b)):
        if status.get(chosen) != "complete":
            st.warning(
                f"Run {name} ({chosen}) is {status.get(chosen)}: what it did not reach "
                "(training, evaluation, push) shows as empty, not as a change."
            )
    only_changes = st.checkbox("Only what changed", value=True, key="only_changes")
    with shown_errors(stop=False):
        sections = data.run_comparison(cfg.metadata, run_a, run_b)
        for name, frame in sections.items():
            shown = frame[frame["changed"]] if only_changes else frame
            st.markdown(
                f"**{name}**: {int(frame['changed'].sum())} changed, "
                f"{int((~frame['changed']).sum())} unchanged"
            )
            if not shown.empty:
                st.dataframe(shown, hide_index=True, key=f"diff_{name}")
