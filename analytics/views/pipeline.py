"""Pipeline health: ingest throughput and latency, consumer lag, raw freshness,
DAG runs with dbt test results, dead letters by reason."""

from __future__ import annotations

import urllib.parse

import pandas as pd
import streamlit as st

from analytics import queries as q
from analytics.db import run
from analytics.settings import PROMETHEUS_GRAPHS, PROMETHEUS_URL, REFRESH_SECONDS
from analytics.ui import TIME_ZONE, as_int, line_chart, lookback_select, ready

st.title("Pipeline health")
st.caption(f"From the `ops` tables and the dead letters; times in {TIME_ZONE}.")

label, lookback, _ = lookback_select("pipeline_range", default="last 6 hours")


def prometheus_graph(expr: str) -> str:
    query = urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": "1h"})
    return f"{PROMETHEUS_URL}/graph?{query}"


def _when(value: object) -> str:
    return "never" if value is None or pd.isna(value) else f"{value:%Y-%m-%d %H:%M:%S}"


@st.fragment(run_every=REFRESH_SECONDS)
def pipeline() -> None:
    st.subheader("Raw freshness")
    fresh = ready(run(q.RAW_FRESHNESS), "raw freshness")
    if fresh is not None:
        f = fresh.iloc[0]
        if f.last_batch_at is None or pd.isna(f.last_batch_at):
            st.info("No ingest batches yet — start the consumer and simulator with `make up`.")
        else:
            cols = st.columns(3)
            cols[0].metric("Seconds since last batch", as_int(f.seconds_since_last_batch))
            cols[1].metric(f"Last batch ({TIME_ZONE})", _when(f.last_batch_at))
            cols[2].metric(f"Newest event landed ({TIME_ZONE})", _when(f.newest_event_at))
    halts = ready(run(q.CONSUMER_HALTS), "consumer halts")
    if halts is not None and not halts.empty:
        st.error(
            f"{len(halts)} partition(s) stopped: their stored position is not in Kafka's log "
            "(topic recreated, log lost or truncated). Nothing of them is landed until you "
            "accept the new log: stop the consumer, then run "
            "`python -m streaming.replay --accept-new-log` (see the README)."
        )
        st.dataframe(halts, hide_index=True, key="pipeline_consumer_halts")
    st.caption(
        "Graphs in Prometheus: "
        + " · ".join(f"[{label}]({prometheus_graph(expr)})" for label, expr in PROMETHEUS_GRAPHS)
        + f" · [alerts]({PROMETHEUS_URL}/alerts)"
    )
    starts = ready(run(q.CONSUMER_STARTS), "consumer starts")
    if starts is not None:
        # every start after a group's first one in the hour is a restart
        restarts = int(sum(max(as_int(n) - 1, 0) for n in starts.starts))
        started, restarted = st.columns(2)
        started.metric("Consumer process starts (last hour)", as_int(starts.starts.sum()))
        restarted.metric("Consumer restarts (last hour)", restarts)
        if restarts >= 2:
            st.warning(
                f"The consumer restarted {restarts} times in the last hour: read its log "
                "(`make logs`) and `make status`."
            )
    sources = ready(run(q.SOURCE_FRESHNESS), "source freshness")
    if sources is not None and not sources.empty:
        st.dataframe(sources, hide_index=True, key="pipeline_source_freshness")

    st.subheader(f"Ingest ({label})")
    batches = ready(run(q.INGEST_THROUGHPUT, lookback=lookback), "ingest throughput")
    if batches is not None:
        if batches.empty:
            st.info("No batches committed in this time range.")
        else:
            cols = st.columns(3)
            cols[0].metric("Rows landed", as_int(batches.rows_valid.sum()))
            cols[1].metric("Rows rejected", as_int(batches.rows_invalid.sum()))
            cols[2].metric("Batches", as_int(batches.batches.sum()))
            left, right = st.columns(2)
            throughput = batches.assign(measure="rows per second")
            left.altair_chart(
                line_chart(
                    throughput,
                    "bucket_at",
                    "rows_per_second",
                    "measure",
                    "rows/s, 5-min average",
                ),
                width="stretch",
            )
            latency = batches.melt(
                "bucket_at", ["latency_p50_ms", "latency_max_ms"], "measure", "latency_ms"
            )
            right.altair_chart(
                line_chart(
                    latency,
                    "bucket_at",
                    "latency_ms",
                    "measure",
                    "latency (ms), max per 5 min",
                ),
                width="stretch",
            )

    st.subheader("Consumer lag")
    lag = ready(run(q.CONSUMER_LAG), "consumer lag")
    if lag is not None:
        if lag.empty:
            st.info("No consumer reported in the last hour.")
        else:
            st.metric("Consumer lag (records)", as_int(lag.consumer_lag.fillna(0).sum()))
            st.dataframe(lag, hide_index=True, key="pipeline_lag")
    partitions = ready(run(q.PARTITION_LAG), "lag per partition")
    if partitions is not None and not partitions.empty:
        st.caption("Lag per partition, as measured by the last DAG run's ingestion gate")
        st.dataframe(partitions, hide_index=True, key="pipeline_partition_lag")
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
            last = runs.iloc[0]
            cols = st.columns(3)
            cols[0].metric("Last run", str(last.state))
            cols[1].metric("dbt tests passed", as_int(last.tests_passed))
            cols[2].metric("dbt tests failed", as_int(last.tests_failed))
            st.dataframe(runs, hide_index=True, key="pipeline_runs")
    failed = ready(run(q.FAILED_DBT_TESTS), "failed dbt tests")
    if failed is not None and not failed.empty:
        st.warning(f"{len(failed)} dbt tests failed or warned in the last 7 days")
        st.dataframe(failed, hide_index=True, key="pipeline_failed_tests")

    st.subheader(f"Dead letters ({label})")
    reasons = ready(run(q.DEAD_LETTERS_BY_REASON, lookback=lookback), "dead letters")
    if reasons is not None:
        if reasons.empty:
            st.success("No dead letters in this time range.")
        else:
            st.metric("Dead letters", as_int(reasons.dead_letters.sum()))
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
