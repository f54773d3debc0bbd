"""Dead letters: rejected records with their reasons, from the DLQ topic (reason in
headers) and from `raw.dead_letters` in PostgreSQL."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import queries as q
from analytics.db import run
from analytics.kafka_ui import inspector
from analytics.kafka_ui.common import KAFKA_REFRESH_SECONDS, fetch
from analytics.ui import ready
from streaming.topics import DLQ

st.title("Dead letters")
st.caption(f"Topic `{DLQ}` (reason from its headers) and table `raw.dead_letters`.")

limit = st.number_input("Latest N per partition", 1, 500, 50, key="dlq_limit")


@st.fragment(run_every=KAFKA_REFRESH_SECONDS)
def dead_letters() -> None:
    st.subheader(f"Topic {DLQ}")
    messages = fetch("messages", DLQ, None, int(limit))
    if messages is not None:
        if not messages:
            st.success(f"{DLQ} is empty: no record has been rejected.")
        else:
            rows = []
            for m in messages:
                reason, detail = inspector.dead_letter_reason(m.headers)
                rows.append(
                    {
                        "reason": reason,
                        "detail": detail,
                        "timestamp (UTC)": m.timestamp,
                        "partition": m.partition,
                        "offset": m.offset,
                        "key": m.key,
                        "headers": ", ".join(f"{k}={v}" for k, v in m.headers.items()),
                        "value": m.value.replace("\n", " ")[:200],
                    }
                )
            frame = pd.DataFrame(rows)
            counts = (
                frame.groupby("reason", as_index=False).size().rename(columns={"size": "messages"})
            )
            st.metric("Messages shown", len(frame))
            st.table(counts.set_index("reason"))
            st.dataframe(frame, hide_index=True, key="dlq_messages")

    st.subheader("Landed in PostgreSQL (last 7 days)")
    reasons = ready(run(q.DEAD_LETTERS_BY_REASON, lookback="7 days"), "dead letters")
    if reasons is not None:
        if reasons.empty:
            st.success("No dead letters landed in the last 7 days.")
        else:
            st.dataframe(reasons, hide_index=True, key="dl_table_reasons")
            samples = ready(
                run(q.DEAD_LETTER_SAMPLES, lookback="7 days", error_kind="", row_limit=20),
                "samples",
            )
            if samples is not None:
                st.dataframe(samples, hide_index=True, key="dl_table_samples")


dead_letters()
