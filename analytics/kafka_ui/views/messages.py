"""Messages: browse a topic by partition and offset, from a timestamp, the newest N or
as a live tail; filter by key, substring or a JSON field; each record with headers,
key, value (pretty-printed, bounded, escaped), size, the sink's verdict under today's
contract and where it landed in PostgreSQL. Every view is a URL (`?topic=&partition=
&offset=&mode=...`) an operator can paste."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from analytics.kafka_ui import inspector
from analytics.kafka_ui.common import (
    fetch,
    format_bytes,
    landings,
    message_link,
    plain,
    read_only,
)

st.title("Messages")
read_only()

MODES = {
    "newest": "Newest N",
    "offset": "From offset",
    "timestamp": "From timestamp",
    "tail": "Live tail",
}
TAIL_SECONDS = 2

found = fetch("topics")
if found is None:
    st.stop()
if not found:
    st.info("The cluster has no topics yet — `make up` creates the platform's topics.")
    st.stop()
by_name = {t.name: t for t in found}
names = list(by_name)
qp = st.query_params


def _int(name: str, default: int) -> int:
    text = qp.get(name, "")
    return int(text) if text.lstrip("-").isdigit() else default


with st.container(horizontal=True):
    wanted = qp.get("topic")
    topic = st.selectbox(
        "Topic", names, index=names.index(wanted) if wanted in names else 0, key="msg_topic"
    )
    partitions = ["all", *(str(p.partition) for p in by_name[topic].partitions)]
    wanted_partition = qp.get("partition", "all")
    partition = st.selectbox(
        "Partition",
        partitions,
        index=partitions.index(wanted_partition) if wanted_partition in partitions else 0,
        key="msg_partition",
    )
    mode_names = list(MODES)
    mode = st.selectbox(
        "Read",
        mode_names,
        index=mode_names.index(qp.get("mode", "")) if qp.get("mode") in MODES else 0,
        format_func=MODES.__getitem__,
        key="msg_mode",
    )
    limit = st.number_input(
        "N (per partition)",
        min_value=1,
        max_value=500,
        value=min(max(_int("limit", 20), 1), 500),
        key="msg_limit",
    )

offset = 0
since: datetime | None = None
with st.container(horizontal=True):
    if mode == "offset":
        offset = int(
            st.number_input(
                "From offset", min_value=0, value=max(_int("offset", 0), 0), key="msg_offset"
            )
        )
    if mode == "timestamp":
        since_text = st.text_input(
            "From (ISO time, UTC unless it says otherwise)",
            value=qp.get("since", ""),
            placeholder="2026-12-01T10:00:00Z",
            key="msg_since",
        )
        try:
            since = datetime.fromisoformat(since_text.strip()) if since_text.strip() else None
        except ValueError:
            st.error(
                f"{since_text!r} is not an ISO time: write it like 2026-12-01T10:00:00Z "
                "or 2026-12-01 10:00."
            )
            st.stop()
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        if since is None:
            st.info("Give a time to read from.")
            st.stop()
    key_filter = st.text_input("Key equals", value=qp.get("key", ""), key="msg_key")
    contains = st.text_input(
        "Key or value contains", value=qp.get("contains", ""), key="msg_contains"
    )
    field_filter = st.text_input(
        "JSON field",
        value=qp.get("field", ""),
        placeholder="device_id = dev-00042",
        key="msg_field",
    )
    scan = st.number_input(
        "Scan at most (records)",
        min_value=100,
        max_value=inspector.MAX_SCAN,
        value=min(max(_int("scan", inspector.DEFAULT_SCAN), 100), inspector.MAX_SCAN),
        step=10_000,
        key="msg_scan",
        help="A filter reads at most this many records (split over the partitions).",
    )

filters = inspector.Filters(key=key_filter, contains=contains, field=field_filter)
try:
    filters.json_field()
except ValueError as exc:
    st.error(str(exc))
    st.stop()

chosen_partition = None if partition == "all" else int(partition)
here = {
    "topic": topic,
    "partition": None if partition == "all" else partition,
    "mode": None if mode == "newest" else mode,
    "offset": offset if mode == "offset" else None,
    "since": since.isoformat() if since is not None else None,
    "limit": None if limit == 20 else int(limit),
    "key": key_filter,
    "contains": contains,
    "field": field_filter,
    "scan": None if scan == inspector.DEFAULT_SCAN else int(scan),
}
qp.from_dict({k: str(v) for k, v in here.items() if v is not None and v != ""})


@st.fragment(run_every=TAIL_SECONDS if mode == "tail" else None)
def messages() -> None:
    read = fetch(
        "browse",
        topic,
        chosen_partition,
        "newest" if mode == "tail" else mode,
        offset,
        since,
        int(limit),
        filters,
        int(scan),
    )
    if read is None:
        return
    shown = read.messages
    cols = st.columns(3)
    cols[0].metric("Messages shown", len(shown))
    cols[1].metric("Records scanned", read.scanned)
    cols[2].metric("Bytes shown", format_bytes(sum(m.size for m in shown)))
    spans = ", ".join(
        f"p{p} {lo}..{hi - 1}" for p, (lo, hi) in sorted(read.ranges.items()) if hi > lo
    )
    note = f"Read {spans}." if spans else "Nothing to read in this range."
    if filters.any:
        note += " Filters look only at the records read; raise *Scan at most* to look further."
    if not read.complete:
        note += " The read stopped at its time budget before the end of the range."
    if mode == "tail":
        note += f" Live: re-read every {TAIL_SECONDS} s."
    st.caption(note)
    if not shown:
        st.info(f"{topic} has no records here that match.")
        return
    landed, why = landings(shown)
    if why:
        st.caption(why)

    def where(m: inspector.Message) -> str:
        if m.origin is None:
            return ""
        return landed.get(m.origin, "?")

    st.dataframe(
        pd.DataFrame(
            [
                {
                    "partition": m.partition,
                    "offset": m.offset,
                    "timestamp (UTC)": m.timestamp,
                    "key": m.key,
                    "size": m.size,
                    "verdict": m.verdict,
                    "landed": where(m),
                    "headers": ", ".join(f"{k}={v}" for k, v in m.headers.items()),
                    "value": m.value.replace("\n", " ")[:200],
                    "link": message_link(m.topic, m.partition, m.offset),
                }
                for m in shown
            ]
        ),
        hide_index=True,
        key="msg_table",
        column_config={"link": st.column_config.LinkColumn("link", display_text="open")},
    )
    for m in shown[:50]:
        when = f"{m.timestamp:%Y-%m-%d %H:%M:%S} UTC" if m.timestamp else "no timestamp"
        with st.expander(f"p{m.partition} @ {m.offset} · key {plain(m.key)} · {when}"):
            here = message_link(m.topic, m.partition, m.offset)
            st.markdown(
                f"`{format_bytes(m.size)}` value, `{format_bytes(m.key_size)}` key · "
                f"[link to this message]({here})"
            )
            if m.verdict:
                st.text(f"Verdict: {m.verdict}")
            if m.origin is not None:
                st.text(f"Landed: {where(m)}")
            if m.headers:
                st.json(m.headers)
            st.code(m.value, language="json" if m.is_json else None)


messages()
