"""Consumer groups: state, members and lag per partition."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics.kafka_ui.common import KAFKA_REFRESH_SECONDS, fetch

st.title("Consumer groups")
st.caption(
    f"Lag = end offset - committed offset, per partition; refreshes every "
    f"{KAFKA_REFRESH_SECONDS} s."
)


@st.fragment(run_every=KAFKA_REFRESH_SECONDS)
def groups() -> None:
    found = fetch("groups")
    if found is None:
        return
    if not found:
        st.info("No consumer groups yet — the sink's group appears once `make up` starts it.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "group": g.group_id,
                    "state": g.state,
                    "members": g.members,
                    "partitions": len(g.partitions),
                    "total lag": g.total_lag,
                }
                for g in found
            ]
        ),
        hide_index=True,
        key="groups_table",
    )
    for g in found:
        st.subheader(f"{g.group_id} — lag {g.total_lag}")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "topic": p.topic,
                        "partition": p.partition,
                        "committed offset": p.committed_offset,
                        "end offset": p.end_offset,
                        "lag": p.lag,
                    }
                    for p in g.partitions
                ],
                columns=["topic", "partition", "committed offset", "end offset", "lag"],
            ),
            hide_index=True,
            key=f"group_{g.group_id}",
        )


groups()
