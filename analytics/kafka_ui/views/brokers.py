"""Brokers: each broker's address, controller role, partitions led and replica health."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics.kafka_ui.common import KAFKA_REFRESH_SECONDS, bootstrap, fetch, read_only

st.title("Brokers")
st.caption(f"Cluster {bootstrap()}; refreshes every {KAFKA_REFRESH_SECONDS} s.")
read_only()


@st.fragment(run_every=KAFKA_REFRESH_SECONDS)
def brokers() -> None:
    found = fetch("cluster")
    if found is None:
        return
    cols = st.columns(4)
    cols[0].metric("Brokers", len(found.brokers))
    cols[1].metric("Controller", "none" if found.controller_id is None else found.controller_id)
    cols[2].metric("Under-replicated partitions", found.under_replicated)
    cols[3].metric("Offline partitions", found.offline)
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "broker": b.node_id,
                    "address": b.address,
                    "controller": "active" if b.is_controller else "",
                    "partitions led": b.leads,
                    "replicas": b.replicas,
                    "replicas out of sync": b.out_of_sync,
                    "roles": b.roles,
                    "rack": b.rack or "",
                    "log dirs": b.log_dirs,
                }
                for b in found.brokers
            ]
        ),
        hide_index=True,
        key="brokers_table",
    )
    if found.under_replicated:
        st.warning(
            f"{found.under_replicated} of {found.partitions} partitions have a replica out of "
            "sync: a broker is down or catching up. Writes need two in-sync replicas "
            "(min.insync.replicas=2 on a three-broker cluster)."
        )
    st.caption(
        f"Cluster id {found.cluster_id}. KRaft controller quorum: {found.quorum or 'unknown'}. "
        "A broker that is down is not listed: the cluster only reports live brokers; its "
        "partitions show as under-replicated."
    )


brokers()
