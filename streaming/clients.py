"""librdkafka settings of the platform's clients, in one place.

Every non-default key carries the reason it is set.
"""

from __future__ import annotations

import logging
from typing import Any

from streaming.settings import KafkaSettings

__all__ = ["ClientRefused", "consumer_config", "producer_config", "refusal"]

# librdkafka's own log lines go through Python logging (JSON off a terminal), not stderr
_LIBRDKAFKA = logging.getLogger("librdkafka")


class ClientRefused(RuntimeError):
    """Kafka refused this client for a reason waiting will not fix (login, TLS)."""


def refusal(err: Any, credential_variable: str = "KAFKA_SASL_PASSWORD") -> str | None:
    """One line naming what to fix when `err` (a KafkaError) means the client's
    credentials or TLS settings are wrong; None for errors that pass (a broker down)."""
    # Matched on the message, not the code alone: a broker shutting down also gives
    # SSL and authentication codes, and those pass.
    text = err.str() if hasattr(err, "str") else str(err)
    if "Authentication failed" in text or "invalid credentials" in text:
        return (
            f"Kafka refused the login ({text.split(': ', 1)[-1][:160]}); "
            f"check {credential_variable} and the user name it belongs to"
        )
    if "certificate verify failed" in text:
        return (
            f"Kafka's TLS handshake failed ({text[:160]}); set KAFKA_SSL_CA_LOCATION to "
            "the cluster's CA certificate (the embedded stack's is .stack/kafka/tls/ca.crt)"
        )
    if "incorrect security.protocol" in text:
        return (
            "Kafka closed the connection before any request: the listener expects TLS/SASL; "
            "set KAFKA_SECURITY_PROTOCOL=SASL_SSL (and KAFKA_SASL_* credentials)"
        )
    return None


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
        # a rebalance moves only the partitions that change owner; the others keep
        # flowing (the sink lands its batch before giving any up)
        "partition.assignment.strategy": "cooperative-sticky",
        # only what producers committed (the simulator does not use transactions, but
        # a producer that does must not leak aborted records into raw)
        "isolation.level": "read_committed",
    }
    config.update(overrides)
    return config
