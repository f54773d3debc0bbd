"""Cached, read-only calls to Kafka for the inspector pages."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

import streamlit as st
from confluent_kafka import KafkaException

from analytics.kafka_ui import inspector
from analytics.settings import KAFKA_REFRESH_SECONDS, kafka_config

__all__ = [
    "KAFKA_REFRESH_SECONDS",
    "READ_ONLY",
    "bootstrap",
    "fetch",
    "format_bytes",
    "format_retention",
    "landings",
    "link",
    "message_link",
    "plain",
    "read_only",
]

logger = logging.getLogger(__name__)

_CACHE_TTL = max(KAFKA_REFRESH_SECONDS // 2, 2)


def _config() -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kafka_config().items()))


def bootstrap() -> str:
    return str(kafka_config()["bootstrap.servers"])


@st.cache_data(ttl=_CACHE_TTL, max_entries=64, show_spinner=False)
def _topics(config: tuple[tuple[str, Any], ...]) -> list[inspector.TopicInfo]:
    return inspector.topics(dict(config))


@st.cache_data(ttl=_CACHE_TTL, max_entries=64, show_spinner=False)
def _cluster(config: tuple[tuple[str, Any], ...]) -> inspector.ClusterInfo:
    return inspector.cluster(dict(config))


@st.cache_data(ttl=_CACHE_TTL, max_entries=64, show_spinner=False)
def _groups(config: tuple[tuple[str, Any], ...]) -> list[inspector.GroupLag]:
    return inspector.consumer_groups(dict(config))


@st.cache_data(ttl=_CACHE_TTL, max_entries=64, show_spinner=False)
def _topic(config: tuple[tuple[str, Any], ...], name: str) -> inspector.TopicDetail:
    return inspector.topic_detail(dict(config), name)


# A live tail re-reads every few seconds: its cache lives two seconds.
@st.cache_data(ttl=2, max_entries=64, show_spinner=False)
def _browse(
    config: tuple[tuple[str, Any], ...],
    topic: str,
    partition: int | None,
    mode: str,
    offset: int,
    since: datetime | None,
    limit: int,
    filters: inspector.Filters,
    scan: int,
) -> inspector.Browse:
    return inspector.browse(
        dict(config),
        topic,
        partition,
        mode=mode,
        offset=offset,
        since=since,
        limit=limit,
        filters=filters,
        scan=scan,
    )


READ_ONLY = (
    "Read-only: this inspector reads metadata, offsets and records and never writes, "
    "commits or joins a consumer group."
)


def read_only() -> None:
    st.caption(f":material/lock: {READ_ONLY}")


def fetch(kind: str, *args: Any) -> Any:
    """topics / topic / cluster / groups / browse from Kafka, or None after
    showing the error in one line."""
    call: Any = {
        "topics": _topics,
        "topic": _topic,
        "cluster": _cluster,
        "groups": _groups,
        "browse": _browse,
    }[kind]
    try:
        return call(_config(), *args)
    except KafkaException as exc:
        detail = exc.args[0] if exc.args else exc
        refused = inspector.refused(kafka_config(), "KAFKA_INSPECTOR_PASSWORD")
        if refused is not None:
            st.error(f"{refused} (then `make restart SERVICE=kafka-ui`).")
            return None
        if "does not exist" in str(detail):
            st.error(f"{detail}: pick a topic from the list (`?topic=` names one).")
            return None
        st.error(
            f"Kafka at {bootstrap()} did not answer ({detail}). "
            "Start it with `make up` or set KAFKA_BOOTSTRAP_SERVERS."
        )
        return None
    except ValueError as exc:  # a request the topic cannot answer (a partition it lacks)
        st.error(str(exc))
        return None


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: object) -> str:
    """Text from a record (a key, a header) safe inside Markdown: shown, never rendered."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def format_bytes(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TB"


def link(page: str, **params: Any) -> str:
    """The URL path of a page with query parameters: a deep link to paste. Topics is
    the app's default page, served at the root."""
    from urllib.parse import urlencode

    shown = {k: v for k, v in params.items() if v is not None and v != ""}
    path = "/" if page == "topics" else f"/{page}"
    return f"{path}?{urlencode(shown)}" if shown else path


def format_retention(ms: int | None) -> str:
    if ms is None:
        return "?"
    if ms < 0:
        return "forever"
    hours = ms / 3_600_000
    return f"{hours / 24:g} days" if hours >= 24 else f"{hours:g} hours"


def message_link(topic: str, partition: int, offset: int) -> str:
    """The deep link that opens exactly one record."""
    return link("messages", topic=topic, partition=partition, offset=offset, mode="offset", limit=1)


def landings(messages: list[inspector.Message]) -> tuple[dict[tuple[str, int, int], str], str]:
    """Where each message's origin record is in PostgreSQL (raw table, dead letter with
    its kind, or not yet landed), from the sink's own tables by Kafka coordinates; and
    a note when that cannot be read (PostgreSQL down, migrations not applied)."""
    import pandas as pd

    from analytics import queries as q
    from analytics.db import run

    by_topic: dict[str, list[tuple[int, int]]] = {}
    for m in messages:
        if m.origin is not None:
            by_topic.setdefault(m.origin[0], []).append((m.origin[1], m.origin[2]))
    found: dict[tuple[str, int, int], str] = {}
    for topic, coordinates in by_topic.items():
        result = run(
            q.RECORD_LANDING,
            topic=topic,
            partitions=[p for p, _ in coordinates],
            offsets=[o for _, o in coordinates],
        )
        if not isinstance(result, pd.DataFrame):
            return found, f"Where records landed is unknown: PostgreSQL said {result.detail}"
        for row in result.itertuples(index=False):
            found[(topic, int(row.kafka_partition), int(row.kafka_offset))] = _landed_text(row)
    return found, ""


def _landed_text(row: Any) -> str:
    import pandas as pd

    if isinstance(row.landed_in, str):
        if row.landed_in == "raw.dead_letters":
            text = f"raw.dead_letters ({row.error_kind})"
            if isinstance(row.redriven_to, str):
                text += f", redriven to {row.redriven_to}"
            return text
        return str(row.landed_in)
    if row.sink_next_offset is None or pd.isna(row.sink_next_offset):
        return "not landed: the sink has not read this partition"
    if int(row.kafka_offset) >= int(row.sink_next_offset):
        return f"not yet landed (the sink is at offset {int(row.sink_next_offset)})"
    return "not found at these coordinates (a record of an earlier log of this partition?)"
