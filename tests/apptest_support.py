"""Helpers for the Streamlit AppTest tests of the dashboard and the Kafka inspector."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from confluent_kafka import Consumer, KafkaException, TopicPartition
from streamlit.testing.v1 import AppTest

from stack.config import REPO_ROOT

DASHBOARD = Path(REPO_ROOT, "analytics", "streamlit_app.py")
KAFKA_UI = Path(REPO_ROOT, "analytics", "kafka_ui", "app.py")


def open_page(script: Path, page: str | None = None, **query_params: str) -> AppTest:
    """Run the app (and switch to `page`) with these URL query parameters, failing on
    any exception the page raised. Caches start empty: AppTests share one process, so a
    page another test opened a few seconds ago would otherwise answer from its cache."""
    import streamlit as st

    st.cache_data.clear()
    at = AppTest.from_file(str(script), default_timeout=60)
    for key, value in query_params.items():
        at.query_params[key] = value
    at.run()
    if page is not None:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def metric_deltas(at: AppTest) -> dict[str, str | None]:
    return {m.label: m.delta for m in at.metric}


def frames(at: AppTest) -> list[pd.DataFrame]:
    return [df.value for df in at.dataframe]


def frame_with(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first dataframe on the page that has all these columns."""
    for frame in frames(at):
        if all(c in frame.columns for c in columns):
            return frame
    raise AssertionError(
        f"no dataframe with columns {columns}; have {[list(f) for f in frames(at)]}"
    )


def texts(at: AppTest) -> str:
    """Every info/success/warning/error/caption text on the page, joined."""
    parts = []
    for kind in (at.info, at.success, at.warning, at.error, at.caption, at.markdown):
        parts += [str(e.value) for e in kind]
    return "\n".join(parts)


def commit_group_offsets(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    """Commit a consumer group's offsets; a fresh broker may still be electing the
    group coordinator, so the commit is retried for up to 30 s."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        for attempt in range(30):
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException:
                if attempt == 29:
                    raise
                time.sleep(1)
    finally:
        consumer.close()
