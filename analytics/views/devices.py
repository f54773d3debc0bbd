"""Devices: current status table, battery and signal distributions, offline devices,
firmware versions."""

from __future__ import annotations

import streamlit as st

from analytics import queries as q
from analytics.db import run
from analytics.settings import REFRESH_SECONDS
from analytics.ui import TIME_ZONE, bar_chart, ready

st.title("Devices")
st.caption(f"Current state from `marts.device_status_current`; times in {TIME_ZONE}.")

states = ready(run(q.HEALTH_STATES), "device status")
if states is None:
    st.stop()

with st.container(horizontal=True):
    search = st.text_input("Search", key="devices_search", placeholder="device, household or model")
    health = st.multiselect(
        "Health state", states.health_state.dropna().tolist(), key="devices_health"
    )
    sort_by = st.selectbox("Sort by", list(q.SORTABLE_DEVICE_COLUMNS), key="devices_sort")
    descending = st.toggle("Descending", key="devices_desc")


@st.fragment(run_every=REFRESH_SECONDS)
def devices() -> None:
    table = ready(
        run(
            q.DEVICE_STATUS,
            search=search.strip(),
            health_states=health,
            sort_by=sort_by,
            descending=descending,
            row_limit=1000,
        ),
        "the device table",
    )
    if table is None:
        return
    st.metric("Devices shown", len(table))
    st.dataframe(
        table,
        hide_index=True,
        key="devices_table",
        column_config={
            "battery_pct": st.column_config.ProgressColumn(
                "battery (%)", min_value=0, max_value=100, format="%d %%"
            ),
            "signal_strength_dbm": st.column_config.NumberColumn("signal (dBm)"),
            "last_health_report_at": st.column_config.DatetimeColumn(f"last report ({TIME_ZONE})"),
            "failure_rate_24h": st.column_config.NumberColumn("failures 24 h (ratio)"),
            "last_event_at": st.column_config.DatetimeColumn(f"last event ({TIME_ZONE})"),
        },
    )
    left, right = st.columns(2)
    battery = ready(run(q.BATTERY_DISTRIBUTION), "battery distribution")
    if battery is not None:
        left.subheader("Battery")
        left.altair_chart(
            bar_chart(
                battery,
                "battery_bucket_pct",
                "devices",
                "battery (%, 10-point bins)",
                "active devices",
            ),
            width="stretch",
        )
    signal = ready(run(q.SIGNAL_DISTRIBUTION), "signal distribution")
    if signal is not None:
        right.subheader("Signal")
        right.altair_chart(
            bar_chart(
                signal,
                "signal_bucket_dbm",
                "devices",
                "signal strength (dBm, 10 dB bins)",
                "active devices",
            ),
            width="stretch",
        )
    offline = ready(run(q.OFFLINE_DEVICES), "offline devices")
    if offline is not None:
        st.subheader(f"Offline devices ({len(offline)})")
        if offline.empty:
            st.success("Every active device is online.")
        else:
            st.dataframe(offline, hide_index=True, key="devices_offline")
    firmware = ready(run(q.FIRMWARE_VERSIONS), "firmware versions")
    if firmware is not None:
        st.subheader("Firmware versions")
        st.altair_chart(
            bar_chart(
                firmware,
                "firmware_version",
                "devices",
                "firmware version",
                "active devices",
                color="device_type",
            ),
            width="stretch",
        )
        st.dataframe(firmware, hide_index=True, key="devices_firmware")
    st.page_link("views/device.py", label="Open one device's history", icon=":material/search:")


devices()
