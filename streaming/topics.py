"""The Kafka topics of the public contract and their idempotent creation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONSUMER_GROUP",
    "DATA_TOPICS",
    "DEVICES",
    "DLQ",
    "EVENTS",
    "HEALTH",
    "TOPICS",
    "TopicSpec",
    "ensure_topics",
    "topic_ids",
]

logger = logging.getLogger(__name__)

EVENTS = "smart-access.events"
HEALTH = "smart-access.health"
DEVICES = "smart-access.devices"
DLQ = "smart-access.dlq"
DATA_TOPICS = (EVENTS, HEALTH, DEVICES)
CONSUMER_GROUP = "smart-access-sink"

_DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


TOPICS: tuple[TopicSpec, ...] = (
    # Keyed by device_id: per-device order holds within a partition.
    TopicSpec(EVENTS, 6, {"cleanup.policy": "delete", "retention.ms": str(7 * _DAY_MS)}),
    TopicSpec(HEALTH, 6, {"cleanup.policy": "delete", "retention.ms": str(3 * _DAY_MS)}),
    # The registry is a changelog: keep the latest record of every device forever.
    TopicSpec(
        DEVICES,
        3,
        {"cleanup.policy": "compact", "retention.ms": "-1", "min.compaction.lag.ms": "60000"},
    ),
    TopicSpec(DLQ, 3, {"cleanup.policy": "delete", "retention.ms": str(30 * _DAY_MS)}),
)


def replicated(config: dict[str, str], replication: int) -> dict[str, str]:
    """A topic's config on `replication` replicas: with three or more, a write needs
    two in sync (acks=all), so one broker may fail without losing or refusing one."""
    return {**config, "min.insync.replicas": "2" if replication >= 3 else "1"}


def ensure_topics(
    kafka_config: dict[str, Any],
    timeout: float = 30.0,
    prefix: str = "",
    replication: int | None = None,
) -> list[str]:
    """Create missing topics and align the configs of existing ones.

    Returns the names of the topics created now. Existing topics keep their data;
    a partition count lower than the spec is raised (Kafka cannot lower it).
    `prefix` names a separate set of the same topics (an environment sharing the
    cluster: `staging.smart-access.events`, ...). `replication`: replicas of a new
    topic; default as many as the cluster has brokers, up to 3.
    """
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )

    admin = AdminClient(kafka_config)
    metadata = admin.list_topics(timeout=timeout)
    replicas = replication or max(1, min(3, len(metadata.brokers)))
    specs = tuple(
        TopicSpec(prefix + s.name, s.partitions, replicated(s.config, replicas)) for s in TOPICS
    )
    existing = metadata.topics
    missing = [spec for spec in specs if spec.name not in existing]
    created: list[str] = []
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, replication_factor=replicas, config=s.config)
                for s in missing
            ],
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    grow = [
        NewPartitions(spec.name, spec.partitions)
        for spec in specs
        if spec.name in existing and len(existing[spec.name].partitions) < spec.partitions
    ]
    if grow:
        for future in admin.create_partitions(grow, request_timeout=timeout).values():
            future.result()
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            spec.name,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in spec.config.items()
            ],
        )
        for spec in specs
        if spec.name in existing
    ]
    if resources:
        for future in admin.incremental_alter_configs(resources).values():
            future.result()
    if created:
        logger.info("created topics: %s", ", ".join(created))
    return created


def topic_ids(admin: Any, topics: list[str], timeout: float = 5.0) -> dict[str, str]:
    """Kafka's id of each of `topics` that exists (a recreated topic gets a new one);
    `admin` is a confluent_kafka AdminClient."""
    from confluent_kafka import KafkaException, TopicCollection

    ids: dict[str, str] = {}
    try:
        futures = admin.describe_topics(TopicCollection(topics), request_timeout=timeout)
    except (KafkaException, ValueError) as exc:
        logger.debug("topic ids unavailable: %s", exc)
        return ids
    for name, future in futures.items():
        try:
            ids[name] = str(future.result().topic_id)
        except KafkaException as exc:
            logger.debug("topic id of %s unavailable: %s", name, exc)
    return ids
