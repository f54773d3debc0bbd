"""One device: registry history (SCD2 dimension), recent events and hourly health."""

from __future__ import annotations

import streamlit as st

from analytics import queries as q
from analytics.db import run
from analytics.settings import REFRESH_SECONDS
from analytics.ui import TIME_ZONE, line_chart, ready

st.title("Device")
st.caption(f"Times in {TIME_ZONE}.")

ids = ready(run(q.DEVICE_IDS), "the device list")
if ids is None:
    st.stop()
choices = ids.device_id.tolist()
if not choices:
    st.info("No devices registered yet — start the simulator (`make up`) and run the DAG.")
    st.stop()
wanted = st.query_params.get("device_id")
device_id = st.selectbox(
    "Device",
    choices,
    index=choices.index(wanted) if wanted in choices else 0,
    key="device_id",
)
st.query_params["device_id"] = device_id


@st.fragment(run_every=REFRESH_SECONDS)
def device() -> None:
    history = ready(run(q.DEVICE_HISTORY, device_id=device_id), "registry history")
    if history is not None:
        st.subheader(f"Registry history ({len(history)} versions)")
        st.dataframe(history, hide_index=True, key="device_history")
    health = ready(run(q.DEVICE_HEALTH, device_id=device_id), "hourly health")
    if health is not None:
        st.subheader("Health, hourly (last 7 days)")
        if health.empty:
            st.info("No health reports from this device in the last 7 days.")
        else:
            left, right = st.columns(2)
            battery = health.melt(
                "hour_start_at", ["battery_avg_pct", "battery_min_pct"], "measure", "battery_pct"
            )
            left.altair_chart(
                line_chart(battery, "hour_start_at", "battery_pct", "measure", "battery (%)"),
                width="stretch",
            )
            signal = health.assign(measure="signal_avg_dbm")
            right.altair_chart(
                line_chart(
                    signal, "hour_at", "signal_strength_dbm_avg", "measure", "signal strength (dBm)"
                ),
                width="stretch",
            )
    events = ready(run(q.DEVICE_EVENTS, device_id=device_id), "events")
    if events is not None:
        st.subheader(f"Latest events ({len(events)})")
        st.dataframe(events, hide_index=True, key="device_events")


device()
