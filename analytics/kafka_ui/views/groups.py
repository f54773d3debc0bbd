"""Consumer groups: state, members with client id, host and assigned partitions, lag
per partition, the sink's lag over time, and its stored positions in PostgreSQL
(`ops.consumer_offsets`) beside Kafka's committed offsets. `?group=` opens one group."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import queries as q
from analytics.db import run
from analytics.kafka_ui.common import KAFKA_REFRESH_SECONDS, fetch, link, read_only
from analytics.kafka_ui.inspector import GroupLag
from streaming.topics import CONSUMER_GROUP

st.title("Consumer groups")
st.caption(
    f"Lag = end offset - committed offset, per partition; refreshes every "
    f"{KAFKA_REFRESH_SECONDS} s."
)
read_only()

MAX_DETAILED = 12  # more groups than this: one in detail, the rest by their links
LOOKBACKS = {"15 minutes": "15 minutes", "1 hour": "1 hour", "6 hours": "6 hours", "1 day": "1 day"}


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
                    "link": link("groups", group=g.group_id),
                }
                for g in found
            ]
        ),
        hide_index=True,
        key="groups_table",
        column_config={"link": st.column_config.LinkColumn("link", display_text="open")},
    )
    wanted = st.query_params.get("group")
    if wanted:
        shown = [g for g in found if g.group_id == wanted]
        if not shown:
            st.warning(f"No consumer group {wanted!r} now; the groups the cluster has are above.")
    elif len(found) <= MAX_DETAILED:
        shown = found
    else:  # many groups: the sink's in detail, the others one link away
        shown = [g for g in found if g.group_id == CONSUMER_GROUP] or found[:1]
        st.caption(
            f"{len(found)} groups: details for {shown[0].group_id} only; open another "
            "with its link."
        )
    for g in shown:
        st.subheader(f"{g.group_id} — lag {g.total_lag}")
        st.caption(
            f"State {g.state} · coordinator broker {g.coordinator} · "
            f"assignor {g.assignor or 'none'} · {g.members} member(s)"
        )
        if g.member_list:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "client id": m.client_id,
                            "host": m.host,
                            "instance id": m.instance_id or "",
                            "assigned": ", ".join(f"{t}[{p}]" for t, p in m.assigned),
                            "member id": m.member_id,
                        }
                        for m in g.member_list
                    ]
                ),
                hide_index=True,
                key=f"members_{g.group_id}",
            )
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
        stored = run(q.CONSUMER_OFFSETS)
        if not isinstance(stored, pd.DataFrame):
            if g.group_id == CONSUMER_GROUP:
                st.caption(f"Stored positions are unknown: PostgreSQL said {stored.detail}")
        elif (stored.consumer_group == g.group_id).any():
            sink(g, stored)


def sink(group: GroupLag, stored: pd.DataFrame) -> None:
    """A sink's own record (it stores positions in PostgreSQL): its lag as each batch
    saw it, and its stored positions beside Kafka's committed offsets."""
    lookback = st.selectbox(
        "Lag over", list(LOOKBACKS), index=1, key=f"lag_lookback_{group.group_id}"
    )
    history = run(q.GROUP_LAG_HISTORY, consumer_group=group.group_id, lookback=lookback)
    if isinstance(history, pd.DataFrame):
        st.markdown(
            f"**Lag over the last {lookback}** (worst per minute, as each batch measured it)"
        )
        if history.empty:
            st.info("No batch committed in this window: the sink is idle or stopped.")
        else:
            st.line_chart(
                history.rename(columns={"minute_at": "minute (UTC)", "lag": "records behind"}),
                x="minute (UTC)",
                y="records behind",
                height=220,
            )
    else:
        st.caption(f"Lag history is unknown: PostgreSQL said {history.detail}")
    mine = stored[stored.consumer_group == group.group_id].set_index(["topic", "partition"])
    rows = []
    for p in group.partitions:
        at = (p.topic, p.partition)
        position = int(mine.loc[at, "next_offset"]) if at in mine.index else None
        rows.append(
            {
                "topic": p.topic,
                "partition": p.partition,
                "stored in PostgreSQL": position,
                "committed in Kafka": p.committed_offset,
                "ahead of Kafka by": None
                if position is None or p.committed_offset is None
                else position - p.committed_offset,
                "end offset": p.end_offset,
            }
        )
    st.markdown("**Positions: PostgreSQL (the truth) beside Kafka (for lag only)**")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"positions_{group.group_id}")
    st.caption(
        "The sink stores each partition's next offset in ops.consumer_offsets in the same "
        "transaction as the rows, and seeks to it on every assignment; it commits to Kafka "
        "only afterwards, asynchronously, so monitoring sees its lag. Kafka's committed "
        "offset may trail the stored one by the batches since its last commit, never lead it."
    )


groups()
