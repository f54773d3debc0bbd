"""Cached, read-only calls to Kafka for the inspector pages."""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st
from confluent_kafka import KafkaException

from analytics.kafka_ui import inspector
from analytics.settings import KAFKA_REFRESH_SECONDS, kafka_config

__all__ = ["KAFKA_REFRESH_SECONDS", "bootstrap", "fetch", "format_retention"]

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
def _messages(
    config: tuple[tuple[str, Any], ...], topic: str, partition: int | None, limit: int
) -> list[inspector.Message]:
    return inspector.latest_messages(dict(config), topic, partition, limit)


def fetch(kind: str, *args: Any) -> Any:
    """topics / cluster / groups / messages from Kafka, or None after showing the error."""
    call: Any = {
        "topics": _topics,
        "cluster": _cluster,
        "groups": _groups,
        "messages": _messages,
    }[kind]
    try:
        return call(_config(), *args)
    except KafkaException as exc:
        st.error(
            f"Kafka at {bootstrap()} did not answer ({exc.args[0] if exc.args else exc}). "
            "Start it with `make up` or set KAFKA_BOOTSTRAP_SERVERS."
        )
        return None


def format_retention(ms: int | None) -> str:
    if ms is None:
        return "?"
    if ms < 0:
        return "forever"
    hours = ms / 3_600_000
    return f"{hours / 24:g} days" if hours >= 24 else f"{hours:g} hours"
