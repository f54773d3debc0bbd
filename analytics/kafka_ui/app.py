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

# The pages live in views/, not pages/: Streamlit treats a pages/ folder beside the
# main script as legacy pages and serves a deep link opened before this script has
# run once in the server process from it directly (without this navigation).
pages = st.navigation(
    [
        st.Page("views/topics.py", title="Topics", icon=":material/topic:", default=True),
        st.Page("views/brokers.py", title="Brokers", icon=":material/dns:"),
        st.Page("views/groups.py", title="Consumer groups", icon=":material/group:"),
        st.Page("views/messages.py", title="Messages", icon=":material/mail:"),
        st.Page("views/dead_letters.py", title="Dead letters", icon=":material/report:"),
    ]
)
pages.run()
