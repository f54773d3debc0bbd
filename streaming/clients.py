"""librdkafka settings of the platform's clients, in one place.

Every non-default key carries the reason it is set.
"""

from __future__ import annotations

import logging
from typing import Any

from streaming.settings import KafkaSettings

__all__ = ["consumer_config", "producer_config"]

# librdkafka's own log lines go through Python logging (JSON off a terminal), not stderr
_LIBRDKAFKA = logging.getLogger("librdkafka")


def producer_config(kafka: KafkaSettings, client_id: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        **kafka.client_config(),
        "client.id": client_id,
        "logger": _LIBRDKAFKA,
        # no duplicates or reordering from retries inside the client
        "enable.idempotence": True,
        # a record counts as sent once every in-sync replica has it
        "acks": "all",
        # cheap on CPU, halves the bytes of JSON payloads
        "compression.type": "lz4",
        # batch for a few milliseconds: far fewer requests at a small latency cost
        "linger.ms": 20,
        # give up on a record after two minutes of broker outage and count it failed
        "delivery.timeout.ms": 120_000,
        # the DLQ and simulator keep their local queue bounded
        "queue.buffering.max.kbytes": 65_536,
    }
    config.update(overrides)
    return config


def consumer_config(
    kafka: KafkaSettings, group: str, client_id: str, **overrides: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        **kafka.client_config(),
        "group.id": group,
        "client.id": client_id,
        "logger": _LIBRDKAFKA,
        # positions live in PostgreSQL with the rows; Kafka's commit is for lag only
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # a partition without a stored position is read from its start, never its end
        "auto.offset.reset": "earliest",
        # a dead consumer's partitions move to the others within ~10 s
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 2_000,
        # bound the prefetch queue: keeps the consumer's memory flat under a backlog
        "queued.max.messages.kbytes": 32_768,
        # only what producers committed (the simulator does not use transactions, but
        # a producer that does must not leak aborted records into raw)
        "isolation.level": "read_committed",
    }
    config.update(overrides)
    return config
