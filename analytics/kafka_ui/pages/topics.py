"""Topics: partitions, cleanup policy, retention, end offsets and message counts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics.kafka_ui.common import KAFKA_REFRESH_SECONDS, bootstrap, fetch, format_retention

st.title("Topics")
st.caption(f"Cluster {bootstrap()}; refreshes every {KAFKA_REFRESH_SECONDS} s. Read-only.")


@st.fragment(run_every=KAFKA_REFRESH_SECONDS)
def topics() -> None:
    found = fetch("topics")
    if found is None:
        return
    if not found:
        st.info("The cluster has no topics yet — `make up` creates the platform's topics.")
        return
    cols = st.columns(3)
    cols[0].metric("Topics", len(found))
    cols[1].metric("Partitions", sum(len(t.partitions) for t in found))
    cols[2].metric("Messages", sum(t.messages for t in found))
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "topic": t.name,
                    "partitions": len(t.partitions),
                    "cleanup.policy": t.cleanup_policy,
                    "retention": format_retention(t.retention_ms),
                    "end offsets (sum)": t.end_offsets,
                    "messages": t.messages,
                }
                for t in found
            ]
        ),
        hide_index=True,
        key="topics_table",
    )
    st.caption(
        "Messages = end offset - start offset per partition: exact for delete topics, an "
        "upper bound for compacted ones."
    )
    for t in found:
        with st.expander(f"{t.name} — partitions"):
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "partition": p.partition,
                            "start offset": p.start_offset,
                            "end offset": p.end_offset,
                            "messages": p.messages,
                        }
                        for p in t.partitions
                    ]
                ),
                hide_index=True,
            )
            settings = {k: v for k, v in sorted(t.configs.items()) if "." in k}
            st.json(
                {
                    k: settings[k]
                    for k in settings
                    if k.split(".")[0]
                    in {"cleanup", "retention", "min", "segment", "max", "compression"}
                },
                expanded=False,
            )


topics()
