"""Devices written to the original guide (contract v0) land, with their original values."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from confluent_kafka import Producer
from ingest_helpers import counts, new_prefix, query, start_consumer, stop_consumer, wait_until

from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.contracts import v0_event_uuid
from streaming.topics import DEVICES, EVENTS, HEALTH


def guide_producer(kafka: EphemeralKafka) -> Producer:
    """Configured as the guide's producer: plain JSON values, key = str(device_id)."""
    return Producer({**kafka.client_config(), "acks": "all"})


def test_guide_messages_and_tombstones_land_as_v0(
    kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    prefix = new_prefix(kafka)
    producer = guide_producer(kafka)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=123456)
    event = {
        "event_id": "42-1764373440123",
        "device_id": 42,
        "event_ts": now.isoformat(),
        "event_type": "command_failed",
        "trigger_source": "button",
    }
    health = {
        "device_id": 42,
        "reported_at": now.isoformat(),
        "battery_pct": 57,
        "signal_strength_dbm": -71,
        "is_online": True,
    }
    for _ in range(2):  # the guide's producer may send an event twice: both land in raw
        producer.produce(prefix + EVENTS, key="42", value=json.dumps(event))
    producer.produce(prefix + HEALTH, key="42", value=json.dumps(health))
    tombstone_ms = int(datetime.now(UTC).timestamp() * 1000)
    producer.produce(prefix + DEVICES, key="dev-9", value=None, timestamp=tombstone_ms)
    assert producer.flush(30) == 0

    consumer, thread = start_consumer(kafka, pg, prefix)
    try:
        wait_until(lambda: sum(counts(pg, prefix).values()) == 4, 60, "every record")
    finally:
        stop_consumer(consumer, thread)
    rows = query(
        pg,
        "select schema_version, event_id, source_event_id, device_id, household_id, event_ts, "
        "event_type, trigger_source, user_id, failure_reason from raw.access_events "
        "where kafka_topic = %s",
        (prefix + EVENTS,),
    )
    assert len(rows) == 2
    assert rows[0] == (
        0,
        str(v0_event_uuid(42, "42-1764373440123")),
        "42-1764373440123",
        "42",
        None,
        now.replace(tzinfo=UTC),
        "command_failed",
        "button",
        None,
        None,
    )
    ((version, device, battery, firmware),) = query(
        pg,
        "select schema_version, device_id, battery_pct, firmware_version from raw.device_health "
        "where kafka_topic = %s",
        (prefix + HEALTH,),
    )
    assert (version, device, battery, firmware) == (0, "42", 57, None)
    ((device, status, updated_at, model),) = query(
        pg,
        "select device_id, status, updated_at, model from raw.device_registry "
        "where kafka_topic = %s",
        (prefix + DEVICES,),
    )
    assert (device, status, model) == ("dev-9", "removed", None)
    assert updated_at == datetime.fromtimestamp(tombstone_ms / 1000, UTC)
    assert counts(pg, prefix)["dead_letters"] == 0
