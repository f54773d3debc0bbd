"""Message browser: the latest N records per topic/partition with key, headers,
timestamp and pretty-printed JSON."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics.kafka_ui.common import fetch

st.title("Messages")

found = fetch("topics")
if found is None:
    st.stop()
if not found:
    st.info("The cluster has no topics yet — `make up` creates the platform's topics.")
    st.stop()
by_name = {t.name: t for t in found}
names = list(by_name)
wanted = st.query_params.get("topic")
with st.container(horizontal=True):
    topic = st.selectbox(
        "Topic", names, index=names.index(wanted) if wanted in names else 0, key="msg_topic"
    )
    partitions = ["all", *(str(p.partition) for p in by_name[topic].partitions)]
    partition = st.selectbox("Partition", partitions, key="msg_partition")
    limit = st.number_input(
        "Latest N per partition", min_value=1, max_value=500, value=20, key="msg_limit"
    )
st.query_params["topic"] = topic

messages = fetch("messages", topic, None if partition == "all" else int(partition), int(limit))
if messages is not None:
    st.metric("Messages shown", len(messages))
    if not messages:
        st.info(f"{topic} has no records{'' if partition == 'all' else ' in this partition'}.")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "partition": m.partition,
                        "offset": m.offset,
                        "timestamp (UTC)": m.timestamp,
                        "key": m.key,
                        "headers": ", ".join(f"{k}={v}" for k, v in m.headers.items()),
                        "value": m.value.replace("\n", " ")[:200],
                    }
                    for m in messages
                ]
            ),
            hide_index=True,
            key="msg_table",
        )
        for m in messages[:50]:
            when = f"{m.timestamp:%Y-%m-%d %H:%M:%S} UTC" if m.timestamp else "no timestamp"
            with st.expander(f"p{m.partition} @ {m.offset} · key {m.key} · {when}"):
                if m.headers:
                    st.json(m.headers)
                st.code(m.value, language="json" if m.is_json else None)
