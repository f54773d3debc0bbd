"""Topics: every topic with partitions, policy, retention, counts, recent records and
size; one topic (`?topic=`) in detail: its configuration with the values that differ
from the defaults marked, partitions with leader, replicas, ISR, offsets and size, and
records appended per minute."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics.kafka_ui.common import (
    KAFKA_REFRESH_SECONDS,
    bootstrap,
    fetch,
    format_bytes,
    format_retention,
    link,
    read_only,
)

st.title("Topics")
st.caption(f"Cluster {bootstrap()}; refreshes every {KAFKA_REFRESH_SECONDS} s.")
read_only()

if fetch("topics") is None:  # one line says why; the fragment below would only repeat it
    st.stop()


@st.fragment(run_every=KAFKA_REFRESH_SECONDS)
def topics() -> None:
    found = fetch("topics")
    if found is None:
        return
    if not found:
        st.info("The cluster has no topics yet — `make up` creates the platform's topics.")
        return
    cols = st.columns(4)
    cols[0].metric("Topics", len(found))
    cols[1].metric("Partitions", sum(len(t.partitions) for t in found))
    cols[2].metric("Messages", sum(t.messages for t in found))
    cols[3].metric("Last 5 minutes", sum(t.last_5_minutes or 0 for t in found))
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "topic": t.name,
                    "partitions": len(t.partitions),
                    "cleanup.policy": t.cleanup_policy
                    + (" (compacted: latest record per key kept)" if t.compacted else ""),
                    "retention": format_retention(t.retention_ms),
                    "end offsets (sum)": t.end_offsets,
                    "messages": t.messages,
                    "last 5 min": t.last_5_minutes,
                    "size": format_bytes(t.size_bytes),
                    "link": link("topics", topic=t.name),
                }
                for t in found
            ]
        ),
        hide_index=True,
        key="topics_table",
        column_config={"link": st.column_config.LinkColumn("link", display_text="details")},
    )
    st.caption(
        "Messages = end offset - start offset per partition: exact for delete topics, an "
        "upper bound for compacted ones. Size: the log segments of each partition's "
        "largest replica, read from the brokers' log directories on this host."
    )


topics()

names = [t.name for t in fetch("topics") or []]
if names:
    wanted = st.query_params.get("topic")
    chosen = st.selectbox(
        "Topic details",
        names,
        index=names.index(wanted) if wanted in names else None,
        placeholder="pick a topic",
        key="topic_detail",
    )
    if chosen:
        st.query_params["topic"] = chosen

        @st.fragment(run_every=KAFKA_REFRESH_SECONDS)
        def detail() -> None:
            topic = fetch("topic", chosen)
            if topic is None:
                return
            label = " · compacted (the latest record per key is kept)" if topic.compacted else ""
            st.subheader(f"{topic.name}{label}")
            st.markdown(f"[Browse its messages]({link('messages', topic=topic.name)})")
            under = sum(p.under_replicated for p in topic.partitions)
            cols = st.columns(4)
            cols[0].metric("Topic partitions", len(topic.partitions))
            cols[1].metric("Under-replicated", under)
            cols[2].metric("Records in the last 15 min", sum(n for _, n in topic.per_minute))
            sizes = [p.size_bytes for p in topic.partitions if p.size_bytes is not None]
            cols[3].metric("Size on disk", format_bytes(sum(sizes)) if sizes else "?")
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "partition": p.partition,
                            "leader": p.leader if p.leader >= 0 else "offline",
                            "replicas": ", ".join(map(str, p.replicas)),
                            "in sync": ", ".join(map(str, p.isr)),
                            "start offset": p.start_offset,
                            "end offset": p.end_offset,
                            "messages": p.messages,
                            "size bytes": p.size_bytes,
                            "link": link(
                                "messages", topic=topic.name, partition=p.partition, mode="newest"
                            ),
                        }
                        for p in topic.partitions
                    ]
                ),
                hide_index=True,
                key="topic_partitions",
                column_config={
                    "link": st.column_config.LinkColumn("link", display_text="messages")
                },
            )
            st.caption(f"Size: {topic.size_note}.")
            st.markdown("**Records appended per minute (UTC), from the records' timestamps**")
            rate = pd.DataFrame(topic.per_minute, columns=["minute (UTC)", "records"])
            st.bar_chart(rate, x="minute (UTC)", y="records", height=220)
            st.markdown("**Configuration** — values set on the topic or the broker are marked")
            configs = pd.DataFrame(
                [
                    {
                        "name": c.name,
                        "value": "(sensitive)" if c.value is None else c.value,
                        "source": c.source,
                        "non-default": "●" if not c.is_default else "",
                    }
                    for c in topic.configs
                ]
            )
            st.dataframe(
                configs.sort_values(["non-default", "name"], ascending=[False, True]),
                hide_index=True,
                key="topic_configs",
            )

        detail()
