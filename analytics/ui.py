"""Shared pieces of the dashboard pages: empty states, KPIs, charts, filters."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from analytics.db import Missing, Unavailable

__all__ = [
    "NO_MARTS",
    "TIME_ZONE",
    "bar_chart",
    "delta",
    "ready",
    "show_absent",
    "time_chart",
]

TIME_ZONE = "UTC"
NO_MARTS = "No marts yet — enable the DAG in Airflow or run `make transform`."

# label -> (lookback interval, chart grain); a "1 day" grain reads the daily rollup.
LOOKBACKS = {
    "last hour": ("1 hour", "1 hour"),
    "last 6 hours": ("6 hours", "1 hour"),
    "last 24 hours": ("24 hours", "1 hour"),
    "last 7 days": ("7 days", "1 hour"),
    "last 30 days": ("30 days", "1 day"),
}


def show_absent(result: Missing | Unavailable, what: str = "") -> None:
    """Tell the user why a section is empty and what to do about it."""
    if isinstance(result, Unavailable):
        st.error(
            f"PostgreSQL is not reachable ({result.detail}). Start the stack with "
            "`make up`, or check PGHOST/PGPORT."
        )
        return
    relations = ", ".join(f"`{r}`" for r in result.relations)
    if result.code == "42703":
        st.warning(
            f"{relations} lacks a column {what or 'this section'} needs ({result.detail}). "
            "Rebuild the marts with `make transform`; if the models changed, align "
            "`analytics/queries.py` with them."
        )
        return
    if result.code == "42501":
        st.warning(
            f"The dashboard's role may not read {relations} ({result.detail}). "
            "Run `make migrate` to apply the grants."
        )
        return
    if any(r.startswith(("marts.", "staging.")) for r in result.relations):
        st.info(f"{NO_MARTS} ({what or 'this section'} reads {relations}: {result.detail})")
    else:
        st.info(
            f"Nothing recorded yet in {relations} ({result.detail}). Run `make migrate`, "
            "start the pipeline with `make up` and enable the DAG in Airflow."
        )


def ready(result: pd.DataFrame | Missing | Unavailable, what: str = "") -> pd.DataFrame | None:
    """The frame when there is one; otherwise render the guidance and return None."""
    if isinstance(result, pd.DataFrame):
        return result
    show_absent(result, what)
    return None


def delta(current: Any, previous: Any) -> int | None:
    """The change of a count against the previous period (None when unknown)."""
    if previous is None or pd.isna(previous) or current is None or pd.isna(current):
        return None
    return int(current) - int(previous)


def as_int(value: Any) -> int:
    return 0 if value is None or pd.isna(value) else int(value)


def time_chart(
    frame: pd.DataFrame, x: str, y: str, color: str | None, y_title: str, x_title: str = "time"
) -> alt.Chart:
    """A stacked area chart over time with the unit and time zone in the axis titles."""
    encoding: dict[str, Any] = {
        "x": alt.X(f"{x}:T", title=f"{x_title} ({TIME_ZONE})", axis=alt.Axis(format="%b %d %H:%M")),
        "y": alt.Y(f"{y}:Q", title=y_title, stack=True if color else None),
        "tooltip": [alt.Tooltip(f"{x}:T", format="%Y-%m-%d %H:%M UTC"), f"{y}:Q"],
    }
    if color:
        encoding["color"] = alt.Color(f"{color}:N", title=color.replace("_", " "))
        encoding["tooltip"].append(f"{color}:N")
    mark = alt.Chart(frame).mark_area(opacity=0.8) if color else alt.Chart(frame).mark_line()
    return mark.encode(**encoding).properties(height=280)


def line_chart(frame: pd.DataFrame, x: str, y: str, color: str, y_title: str) -> alt.Chart:
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:T", title=f"time ({TIME_ZONE})", axis=alt.Axis(format="%b %d %H:%M")),
            y=alt.Y(f"{y}:Q", title=y_title),
            color=alt.Color(f"{color}:N", title=color.replace("_", " ")),
            tooltip=[alt.Tooltip(f"{x}:T", format="%Y-%m-%d %H:%M UTC"), f"{y}:Q", f"{color}:N"],
        )
        .properties(height=260)
    )


def bar_chart(
    frame: pd.DataFrame, x: str, y: str, x_title: str, y_title: str, color: str | None = None
) -> alt.Chart:
    encoding: dict[str, Any] = {
        "x": alt.X(f"{x}:O", title=x_title),
        "y": alt.Y(f"{y}:Q", title=y_title),
        "tooltip": [f"{x}:O", f"{y}:Q"],
    }
    if color:
        encoding["color"] = alt.Color(f"{color}:N", title=color.replace("_", " "))
    return alt.Chart(frame).mark_bar().encode(**encoding).properties(height=240)


def lookback_select(key: str, default: str = "last 24 hours") -> tuple[str, str, str]:
    """A time-range picker; returns (label, lookback interval, chart grain)."""
    label = st.selectbox(
        "Time range", list(LOOKBACKS), index=list(LOOKBACKS).index(default), key=key
    )
    lookback, grain = LOOKBACKS[label]
    return label, lookback, grain
