"""Smart-access analytics dashboard: `streamlit run analytics/streamlit_app.py`.

Reads the dbt marts and the ops tables through `st.connection` as the read-only
`smart_access_analyst` role (PG* variables); never writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run` puts only this folder on sys.path; the pages import `analytics.*`.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

st.set_page_config(page_title="Smart access", page_icon=":material/garage_home:", layout="wide")

# The pages live in views/, not pages/: Streamlit treats a pages/ folder beside the
# main script as legacy pages and serves a deep link opened before this script has
# run once in the server process from it directly (without this navigation).
pages = st.navigation(
    {
        "Analytics": [
            st.Page(
                "views/overview.py", title="Overview", icon=":material/dashboard:", default=True
            ),
            st.Page("views/activity.py", title="Activity", icon=":material/timeline:"),
            st.Page("views/devices.py", title="Devices", icon=":material/sensors:"),
            st.Page("views/device.py", title="Device", icon=":material/search:"),
            st.Page("views/alerts.py", title="Alerts", icon=":material/notifications:"),
        ],
        "Operations": [
            st.Page("views/pipeline.py", title="Pipeline health", icon=":material/monitor_heart:"),
        ],
    }
)
pages.run()
