"""Dead letters: by kind over time (`raw.dead_letters`), and the newest copies on the
DLQ topic with the reason from their headers, a bounded preview, their verdict under
today's contract and the redrive command for the kinds that would land now."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import queries as q
from analytics.db import run
from analytics.kafka_ui import inspector
from analytics.kafka_ui.common import (
    KAFKA_REFRESH_SECONDS,
    fetch,
    landings,
    message_link,
    read_only,
)
from analytics.ui import ready
from streaming.topics import DLQ

st.title("Dead letters")
st.caption(f"Topic `{DLQ}` (reason from its headers) and table `raw.dead_letters`.")
read_only()

limit = st.number_input("Latest N per partition", 1, 500, 50, key="dlq_limit")
wanted_kind = st.query_params.get("kind", "")
REDRIVE = ".venv/bin/python -m streaming.redrive"


@st.fragment(run_every=KAFKA_REFRESH_SECONDS)
def dead_letters() -> None:
    st.subheader("Landed in PostgreSQL (last 7 days)")
    over_time = ready(run(q.DEAD_LETTERS_OVER_TIME, lookback="7 days"), "dead letters")
    if over_time is not None and not over_time.empty:
        st.bar_chart(
            over_time.rename(columns={"hour_at": "hour (UTC)"}),
            x="hour (UTC)",
            y="dead_letters",
            color="error_kind",
            height=220,
        )
    reasons = ready(run(q.DEAD_LETTERS_BY_REASON, lookback="7 days"), "dead letters")
    if reasons is not None:
        if reasons.empty:
            st.success("No dead letters landed in the last 7 days.")
        else:
            st.dataframe(reasons, hide_index=True, key="dl_table_reasons")
            samples = ready(
                run(q.DEAD_LETTER_SAMPLES, lookback="7 days", error_kind=wanted_kind, row_limit=20),
                "samples",
            )
            if samples is not None:
                st.dataframe(samples, hide_index=True, key="dl_table_samples")

    st.subheader(f"Topic {DLQ}")
    read = fetch("browse", DLQ, None, "newest", 0, None, int(limit), inspector.Filters(), 1)
    if read is None:
        return
    messages = read.messages
    if not messages:
        st.success(f"{DLQ} is empty: no record has been rejected.")
        return
    landed, why = landings(messages)
    if why:
        st.caption(why)
    rows = []
    for m in messages:
        reason, detail = inspector.dead_letter_reason(m.headers)
        if wanted_kind and reason != wanted_kind:
            continue
        rows.append(
            {
                "reason": reason,
                "detail": detail,
                "verdict today": m.verdict,
                "landed": landed.get(m.origin, "?") if m.origin else "",
                "timestamp (UTC)": m.timestamp,
                "partition": m.partition,
                "offset": m.offset,
                "key": m.key,
                "size": m.size,
                "headers": ", ".join(f"{k}={v}" for k, v in m.headers.items()),
                "value": m.value.replace("\n", " ")[:200],
                "link": message_link(DLQ, m.partition, m.offset),
                "_valid": m.valid,
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        st.info(f"No DLQ record of kind {wanted_kind!r} among the newest {int(limit)}.")
        return
    counts = frame.groupby("reason", as_index=False).size().rename(columns={"size": "messages"})
    st.metric("Messages shown", len(frame))
    st.table(counts.set_index("reason"))
    st.dataframe(
        frame.drop(columns=["_valid"]),
        hide_index=True,
        key="dlq_messages",
        column_config={"link": st.column_config.LinkColumn("link", display_text="open")},
    )
    fixed = sorted(set(frame.loc[frame["_valid"] == True, "reason"]))  # noqa: E712
    if fixed:
        kinds = " ".join(f"--kind {k}" for k in fixed)
        st.markdown(
            "**Valid under today's contract** — these kinds would land now. Redrive them "
            "from the project directory (it needs PostgreSQL only), first as a dry run:"
        )
        st.code(f"{REDRIVE} {kinds} --dry-run\n{REDRIVE} {kinds}", language="bash")
    else:
        st.caption(
            "None of these would land under today's contract: fix the producer or the "
            f"contract first, then `{REDRIVE} --dry-run` says what would land."
        )


dead_letters()
