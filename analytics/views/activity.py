"""Activity: access events over time by event type and trigger source, with filters."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import queries as q
from analytics.db import run
from analytics.settings import REFRESH_SECONDS
from analytics.ui import TIME_ZONE, lookback_select, ready, time_chart

st.title("Activity")
st.caption(
    "Event types and trigger sources from `marts.agg_access_fleet_15min` (one household: "
    "`agg_access_hourly`, `agg_access_daily` for 30 days); the range starts on a whole hour "
    "(day for 30 days). "
    f"Times in {TIME_ZONE}."
)

found = ready(run(q.FILTER_OPTIONS), "the filters")
if found is None:
    st.stop()
options: pd.DataFrame = found


def _values(kind: str) -> list[str]:
    return sorted(options.loc[options.kind == kind, "value"].dropna().astype(str))


with st.container(horizontal=True):
    label, lookback, grain = lookback_select("activity_range")
    regions = st.multiselect("Region", _values("region"), key="activity_regions")
    device_types = st.multiselect("Device type", _values("device_type"), key="activity_types")
    models = st.multiselect("Model", _values("model"), key="activity_models")
    household = st.text_input("Household", key="activity_household", placeholder="household_id")

daily = grain == "1 day"
params = {
    "range_unit": "day" if daily else "hour",
    "lookback": lookback,
    "grain": grain,
    "regions": regions,
    "device_types": device_types,
    "models": models,
    "household_id": household.strip(),
}


@st.fragment(run_every=REFRESH_SECONDS)
def activity() -> None:
    by_type = ready(
        run(q.ACTIVITY_BY_TYPE_DAILY if daily else q.ACTIVITY_BY_TYPE, **params),
        "activity by type",
    )
    by_source = ready(
        run(q.ACTIVITY_BY_SOURCE_DAILY if daily else q.ACTIVITY_BY_SOURCE, **params),
        "activity by trigger source",
    )
    if by_type is None or by_source is None:
        return
    total = int(by_type.events.sum()) if not by_type.empty else 0
    failures = int(by_type.loc[by_type.event_type == "fail", "events"].sum())
    cols = st.columns(3)
    cols[0].metric(f"Events ({label})", total)
    cols[1].metric("Failures", failures)
    cols[2].metric("Failure rate", f"{100.0 * failures / total:.1f} %" if total else "n/a")
    if by_type.empty:
        st.info("No access events match these filters in this time range.")
        return
    unit = f"events per {grain}"
    st.subheader("By event type")
    st.altair_chart(time_chart(by_type, "bucket_at", "events", "event_type", unit), width="stretch")
    st.subheader("By trigger source")
    st.altair_chart(
        time_chart(by_source, "bucket_at", "events", "trigger_source", unit), width="stretch"
    )
    st.subheader("Totals")
    totals = (
        by_source.groupby("trigger_source", as_index=False)["events"]
        .sum()
        .sort_values("events", ascending=False)
    )
    st.dataframe(totals, hide_index=True, key="activity_totals")


activity()
