"""Overview: headline KPIs with deltas against the previous period, events per 15 min."""

from __future__ import annotations

import streamlit as st

from analytics import queries as q
from analytics.db import run
from analytics.settings import REFRESH_SECONDS
from analytics.ui import TIME_ZONE, as_int, delta, ready, time_chart

# Six hours of 15-minute windows; the Activity page has longer ranges, hourly.
CHART_HOURS = 6

st.title("Overview")
st.caption(
    f"Times in {TIME_ZONE}. Event figures count whole 15-minute windows and whole hours "
    f"before the current one; deltas compare with the period before. Refreshes every "
    f"{REFRESH_SECONDS} s."
)


@st.fragment(run_every=REFRESH_SECONDS)
def overview() -> None:
    events = ready(run(q.EVENT_KPIS), "event KPIs")
    devices = ready(run(q.DEVICE_KPIS, low_battery_pct=q.LOW_BATTERY_PCT), "device KPIs")
    alerts = ready(run(q.ALERT_KPIS), "alert KPIs")
    cols = st.columns(6)
    if events is not None:
        e = events.iloc[0]
        cols[0].metric(
            "Events (15 min)",
            as_int(e.events_15m),
            delta(e.events_15m, e.events_15m_prev),
            help="Access events in the last complete 15-minute window, against the one before.",
        )
        cols[1].metric(
            "Events (24 h)",
            as_int(e.events_24h),
            delta(e.events_24h, e.events_24h_prev),
            help=(
                "Access events in the 24 hours up to the current 15-minute window, "
                "against the 24 hours before."
            ),
        )
        rate = 100.0 * e.failures_24h / e.events_24h if e.events_24h else 0.0
        prev = 100.0 * e.failures_24h_prev / e.events_24h_prev if e.events_24h_prev else None
        cols[2].metric(
            "Failure rate (24 h)",
            f"{rate:.1f} %",
            f"{rate - prev:+.1f} pp" if prev is not None else None,
            delta_color="inverse",
            help="Share of events of type `fail` in the last 24 whole hours, against the 24 "
            "hours before.",
        )
    if devices is not None:
        d = devices.iloc[0]
        cols[3].metric(
            "Devices online",
            as_int(d.devices_online),
            delta(d.devices_online, d.devices_online_prev),
            help="Active devices online now (last report online, within 15 min), against "
            "devices that reported online in the previous hour.",
        )
        cols[4].metric(
            "Low-battery devices",
            as_int(d.low_battery),
            delta(d.low_battery, d.low_battery_prev),
            delta_color="inverse",
            help=f"Active devices whose last battery reading is below {q.LOW_BATTERY_PCT} %, "
            "against devices with a reading below it in the previous hour.",
        )
    if alerts is not None:
        a = alerts.iloc[0]
        cols[5].metric(
            "Open alerts",
            as_int(a.open_alerts),
            delta(a.open_alerts, a.open_alerts_prev),
            delta_color="inverse",
            help="Alerts not resolved yet, against those open 24 hours ago.",
        )

    st.subheader(f"Events per 15 minutes by type (last {CHART_HOURS} h)")
    series = ready(
        run(q.EVENTS_PER_15MIN, lookback=f"{CHART_HOURS} hours"), "the event time series"
    )
    if series is not None:
        if series.empty:
            st.info(f"No access events in the last {CHART_HOURS} hours.")
        else:
            st.altair_chart(
                time_chart(series, "window_start_at", "events", "event_type", "events per 15 min"),
                width="stretch",
            )


overview()
