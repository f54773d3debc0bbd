"""Property: whatever the validator accepts, the sink stores, value for value."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.ephemeral import EphemeralPostgres
from streaming.contracts import AccessEvent, DeviceRegistration, HealthReport, Invalid, Validator
from streaming.sink import Batch, PostgresSink, Record
from streaming.topics import DEVICES, EVENTS, HEALTH

NOW = datetime.now(UTC)
PREFIX = f"prop{uuid.uuid4().hex[:8]}."
_offsets = itertools.count()

text = st.text(min_size=1, max_size=130)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)
access = st.fixed_dictionaries(
    {
        "schema_version": st.just(1),
        "event_id": st.uuids().map(str),
        "device_id": text,
        "household_id": text,
        "event_ts": moments.map(lambda d: d.isoformat()),
        "event_type": st.sampled_from(["open", "close"]),
        "trigger_source": st.sampled_from(["app", "keypad", "remote", "schedule", "voice"]),
    },
    optional={"user_id": st.one_of(st.none(), text)},
)
health = st.fixed_dictionaries(
    {
        "schema_version": st.just(1),
        "device_id": text,
        "reported_at": moments.map(lambda d: d.isoformat()),
        "battery_pct": st.integers(-1, 101),
        "signal_strength_dbm": st.integers(-121, 1),
        "is_online": st.booleans(),
        "firmware_version": text,
    },
    optional={"temperature_c": st.one_of(st.none(), st.floats(-100, 200, allow_nan=False))},
)
registry = st.fixed_dictionaries(
    {
        "schema_version": st.just(1),
        "device_id": text,
        "household_id": text,
        "device_type": st.sampled_from(["garage_door", "gate", "smart_lock"]),
        "model": text,
        "firmware_version": text,
        "installed_at": moments.map(lambda d: d.isoformat()),
        "status": st.sampled_from(["active", "retired"]),
        "updated_at": moments.map(lambda d: d.isoformat()),
    },
    optional={
        "region": st.one_of(st.none(), text),
        "timezone": st.sampled_from(["Europe/Berlin", "Asia/Tokyo", "Nowhere/City"]),
    },
)
COLUMNS = {
    EVENTS: (
        "access_events",
        [
            "event_id",
            "device_id",
            "household_id",
            "event_ts",
            "event_type",
            "trigger_source",
            "user_id",
            "kafka_key",
        ],
    ),
    HEALTH: (
        "device_health",
        [
            "device_id",
            "reported_at",
            "battery_pct",
            "signal_strength_dbm",
            "is_online",
            "firmware_version",
            "temperature_c",
            "kafka_key",
        ],
    ),
    DEVICES: (
        "device_registry",
        [
            "device_id",
            "household_id",
            "device_type",
            "model",
            "firmware_version",
            "installed_at",
            "status",
            "updated_at",
            "region",
            "timezone",
            "kafka_key",
        ],
    ),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic_and_body=st.one_of(
        access.map(lambda b: (EVENTS, b)),
        health.map(lambda b: (HEALTH, b)),
        registry.map(lambda b: (DEVICES, b)),
    ),
    ascii_only=st.booleans(),
)
def test_accepted_records_are_stored_exactly(
    pg: EphemeralPostgres, topic_and_body: tuple[str, dict], ascii_only: bool
) -> None:
    topic, body = topic_and_body
    raw_value = json.dumps(body, ensure_ascii=ascii_only).encode()
    result = Validator().validate(topic, raw_value, NOW)
    if isinstance(result, Invalid):
        return
    assert isinstance(result, AccessEvent | HealthReport | DeviceRegistration)
    offset = next(_offsets)
    record = Record(PREFIX + topic, 0, offset, 1_700_000_000_123, b"k", raw_value)
    batch = Batch()
    batch.add_valid(result, record, topic, body["device_id"])
    sink = PostgresSink(pg.dsn(user="smart_access_loader"), PREFIX + "sink", "property")
    try:
        outcome = sink.write(batch)
    finally:
        sink.close()
    assert outcome.rows == 1 and outcome.db_rejected == 0
    table, columns = COLUMNS[topic]
    conn = psycopg2.connect(pg.dsn())
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"select {', '.join(columns)} from raw.{table} "
                "where kafka_topic = %s and kafka_offset = %s",
                (PREFIX + topic, offset),
            )
            (row,) = cur.fetchall()
    finally:
        conn.close()
    stored = dict(zip(columns, row, strict=True))
    assert stored.pop("kafka_key") == body["device_id"]
    for name, value in stored.items():
        expected = getattr(result, name)
        if isinstance(expected, uuid.UUID):
            expected = str(expected)
            value = str(value)
        assert value == expected, name
