"""Pipeline health: ingest throughput and latency, consumer lag, raw freshness,
DAG runs with dbt test results, dead letters by reason."""

from __future__ import annotations

import streamlit as st

from analytics import queries as q
from analytics.db import run
from analytics.settings import REFRESH_SECONDS
from analytics.ui import TIME_ZONE, line_chart, lookback_select, ready

st.title("Pipeline health")
st.caption(f"From `ops.*` and `raw.dead_letters`; times in {TIME_ZONE}.")

label, lookback, _ = lookback_select("pipeline_range", default="last 6 hours")


@st.fragment(run_every=REFRESH_SECONDS)
def pipeline() -> None:
    fresh = ready(run(q.RAW_FRESHNESS), "raw freshness")
    if fresh is not None:
        f = fresh.iloc[0]
        cols = st.columns(3)
        if f.last_batch_at is None or str(f.last_batch_at) == "NaT":
            st.info("No ingest batches yet — start the consumer and simulator with `make up`.")
        else:
            cols[0].metric("Seconds since last batch", int(f.seconds_since_last_batch))
            cols[1].metric("Last batch (UTC)", f"{f.last_batch_at:%Y-%m-%d %H:%M:%S}")
            if f.last_event_at is not None and str(f.last_event_at) != "NaT":
                cols[2].metric("Newest event landed (UTC)", f"{f.last_event_at:%Y-%m-%d %H:%M:%S}")

    st.subheader(f"Ingest ({label})")
    batches = ready(run(q.INGEST_THROUGHPUT, lookback=lookback), "ingest throughput")
    if batches is not None:
        if batches.empty:
            st.info("No batches committed in this time range.")
        else:
            cols = st.columns(3)
            cols[0].metric("Rows landed", int(batches.rows_valid.sum()))
            cols[1].metric("Rows rejected", int(batches.rows_invalid.sum()))
            cols[2].metric("Batches", int(batches.batches.sum()))
            left, right = st.columns(2)
            throughput = batches.assign(measure="rows per second")
            left.altair_chart(
                line_chart(
                    throughput,
                    "bucket_at",
                    "rows_per_second",
                    "measure",
                    "rows per second (5-min average)",
                ),
                width="stretch",
            )
            latency = batches.melt(
                "bucket_at", ["latency_p50_ms", "latency_max_ms"], "measure", "latency_ms"
            )
            right.altair_chart(
                line_chart(
                    latency, "bucket_at", "latency_ms", "measure", "end-to-end latency (ms)"
                ),
                width="stretch",
            )

    st.subheader("Consumer lag")
    lag = ready(run(q.CONSUMER_LAG), "consumer lag")
    if lag is not None:
        if lag.empty:
            st.info("No consumer reported in the last hour.")
        else:
            st.metric("Total lag (records)", int(lag.consumer_lag.fillna(0).sum()))
            st.dataframe(lag, hide_index=True, key="pipeline_lag")
    offsets = ready(run(q.CONSUMER_OFFSETS), "consumer offsets")
    if offsets is not None and not offsets.empty:
        with st.expander("Stored consumer positions (ops.consumer_offsets)"):
            st.dataframe(offsets, hide_index=True, key="pipeline_offsets")

    st.subheader("DAG runs and dbt tests")
    runs = ready(run(q.PIPELINE_RUNS), "DAG runs")
    if runs is not None:
        if runs.empty:
            st.info("No DAG runs recorded yet — enable the DAG in Airflow.")
        else:
            st.dataframe(runs, hide_index=True, key="pipeline_runs")
    tests = ready(run(q.DBT_TEST_RESULTS), "dbt test results")
    if tests is not None and not tests.empty:
        st.dataframe(tests, hide_index=True, key="pipeline_tests")
        failed = ready(run(q.FAILED_DBT_TESTS), "failed dbt tests")
        if failed is not None and not failed.empty:
            st.warning(f"{len(failed)} dbt tests failed or warned recently")
            st.dataframe(failed, hide_index=True, key="pipeline_failed_tests")

    st.subheader(f"Dead letters ({label})")
    reasons = ready(run(q.DEAD_LETTERS_BY_REASON, lookback=lookback), "dead letters")
    if reasons is not None:
        if reasons.empty:
            st.success("No dead letters in this time range.")
        else:
            st.metric("Dead letters", int(reasons.dead_letters.sum()))
            st.dataframe(reasons, hide_index=True, key="pipeline_dead_reasons")
            kind = st.selectbox(
                "Samples of reason",
                ["(all)", *sorted(reasons.error_kind.unique())],
                key="pipeline_dead_kind",
            )
            samples = ready(
                run(
                    q.DEAD_LETTER_SAMPLES,
                    lookback=lookback,
                    error_kind="" if kind == "(all)" else kind,
                    row_limit=20,
                ),
                "dead-letter samples",
            )
            if samples is not None:
                st.dataframe(samples, hide_index=True, key="pipeline_dead_samples")


pipeline()
