"""Kafka topic inspector (read-only): `streamlit run analytics/kafka_ui/app.py`.

Serves :8090 in the embedded stack, where no Kafka web UI can be installed. Reads
the cluster named by KAFKA_BOOTSTRAP_SERVERS; browsing never joins a group or commits.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

_ROOT = str(Path(__file__).resolve().parent.parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

st.set_page_config(page_title="Kafka inspector", page_icon=":material/hub:", layout="wide")

pages = st.navigation(
    [
        st.Page("pages/topics.py", title="Topics", icon=":material/topic:", default=True),
        st.Page("pages/brokers.py", title="Brokers", icon=":material/dns:"),
        st.Page("pages/groups.py", title="Consumer groups", icon=":material/group:"),
        st.Page("pages/messages.py", title="Messages", icon=":material/mail:"),
        st.Page("pages/dead_letters.py", title="Dead letters", icon=":material/report:"),
    ]
)
pages.run()
