"""Alerts: open and recent alerts by type and severity, with durations, and what the
notifier sent."""

from __future__ import annotations

import streamlit as st

from analytics import queries as q
from analytics.db import run
from analytics.settings import REFRESH_SECONDS
from analytics.ui import TIME_ZONE, bar_chart, lookback_select, ready

st.title("Alerts")
st.caption(f"From `marts.fct_alerts`; times in {TIME_ZONE}, durations in minutes.")

options = ready(run(q.ALERT_FILTER_OPTIONS), "the alert filters")
if options is None:
    st.stop()

with st.container(horizontal=True):
    label, lookback, _ = lookback_select("alerts_range", default="last 7 days")
    alert_types = st.multiselect(
        "Alert type",
        options.loc[options.kind == "alert_type", "value"].tolist(),
        key="alerts_types",
    )
    severities = st.multiselect(
        "Severity",
        options.loc[options.kind == "severity", "value"].tolist(),
        key="alerts_severities",
    )

filters = {"alert_types": alert_types, "severities": severities}


@st.fragment(run_every=REFRESH_SECONDS)
def alerts() -> None:
    open_now = ready(run(q.OPEN_ALERTS_BY_TYPE, **filters), "open alerts")
    recent = ready(run(q.RECENT_ALERTS, lookback=lookback, **filters), "recent alerts")
    durations = ready(run(q.ALERT_DURATIONS, lookback=lookback, **filters), "durations")
    if open_now is None or recent is None or durations is None:
        return
    cols = st.columns(3)
    cols[0].metric("Open alerts", int(open_now.open_alerts.sum()))
    cols[1].metric(f"Alerts started ({label})", int(recent.in_range.sum()))
    cols[2].metric(f"Ended ({label})", int(durations.ended_alerts.sum()))
    st.subheader("Open alerts by type and severity")
    if open_now.empty:
        st.success("No open alerts.")
    else:
        st.altair_chart(
            bar_chart(
                open_now, "alert_type", "open_alerts", "alert type", "open alerts", color="severity"
            ),
            width="stretch",
        )
        st.dataframe(open_now, hide_index=True, key="alerts_open")
    st.subheader("Durations of ended alerts (minutes)")
    st.dataframe(durations, hide_index=True, key="alerts_durations")
    st.subheader(f"Recent alerts ({label}, plus every open one)")
    st.dataframe(
        recent,
        hide_index=True,
        key="alerts_recent",
        column_config={
            "started_at": st.column_config.DatetimeColumn(f"started ({TIME_ZONE})"),
            "ended_at": st.column_config.DatetimeColumn(f"ended ({TIME_ZONE})"),
            "duration_minutes": st.column_config.NumberColumn("duration (min)"),
        },
    )
    st.subheader(f"Notifications ({label})")
    sent = ready(run(q.ALERT_NOTIFICATIONS, lookback=lookback), "notifications")
    if sent is not None:
        if sent.empty:
            st.info(
                "No notification in this range. The DAG smart_access_alert_notifications "
                "sends them after each build once enabled (see the README)."
            )
        else:
            unconfirmed = int((sent.status == "sending").sum())
            if unconfirmed:
                st.warning(
                    f"{unconfirmed} notification(s) were being sent when their run stopped: "
                    "they are never resent; check the receiver."
                )
            st.dataframe(
                sent,
                hide_index=True,
                key="alerts_notifications",
                column_config={
                    "updated_at": st.column_config.DatetimeColumn(f"when ({TIME_ZONE})"),
                    "sent_at": st.column_config.DatetimeColumn(f"sent ({TIME_ZONE})"),
                },
            )


alerts()
