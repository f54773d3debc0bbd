"""Property (differential, validator vs. PostgreSQL): whatever the validator accepts,
the database stores, value for value, through the consumer's whole path (key, record
timestamp, the batch's stats row), for all three contracts. The strategies reach past
every bound: any UTC offset ISO-8601 allows, years 1 to 9999, any Unicode (lone
surrogates included), integers and floats far out of range, any record timestamp."""

from __future__ import annotations

import itertools
import json
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.ephemeral import EphemeralPostgres
from streaming.consumer import absorb_record
from streaming.contracts import (
    AccessEvent,
    AccessEventV0,
    DeviceRegistration,
    HealthReport,
    HealthReportV0,
    Validator,
    v0_event_uuid,
)
from streaming.sink import Batch, PostgresSink, Record
from streaming.topics import DEVICES, EVENTS, HEALTH

NOW = datetime.now(UTC)
PREFIX = f"prop{uuid.uuid4().hex[:8]}."
_offsets = itertools.count()
VALIDATOR = Validator()

text = st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=130)
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets),
    st.datetimes(
        min_value=datetime(1999, 12, 30), max_value=datetime(2000, 1, 2), timezones=offsets
    ),
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1), timezones=offsets),
)
big_ints = st.one_of(st.integers(-130, 130), st.integers(-(2**70), 2**70))
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
        "battery_pct": big_ints,
        "signal_strength_dbm": big_ints,
        "is_online": st.booleans(),
        "firmware_version": text,
    },
    optional={"temperature_c": st.one_of(st.none(), st.floats(allow_nan=False))},
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


@settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    topic_and_body=st.one_of(
        access.map(lambda b: (EVENTS, b)),
        health.map(lambda b: (HEALTH, b)),
        registry.map(lambda b: (DEVICES, b)),
    ),
    ascii_only=st.booleans(),
    timestamp_ms=st.one_of(st.just(1_700_000_000_123), st.integers(-(2**63), 2**63 - 1)),
)
def test_accepted_records_are_stored_exactly(
    pg: EphemeralPostgres, topic_and_body: tuple[str, dict], ascii_only: bool, timestamp_ms: int
) -> None:
    topic, body = topic_and_body
    try:
        raw_value = json.dumps(body, ensure_ascii=ascii_only, allow_nan=False).encode()
    except (UnicodeEncodeError, ValueError):  # lone surrogates: the bytes a producer sends
        raw_value = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    key_text = body["device_id"]
    try:
        key = key_text.encode()
    except UnicodeEncodeError:
        key = key_text.encode("utf-8", "surrogatepass")
    offset = next(_offsets)
    record = Record(PREFIX + topic, 0, offset, timestamp_ms, key, raw_value)
    batch = Batch()
    absorb_record(batch, VALIDATOR.validate, record, topic, NOW)
    if batch.dead:
        assert batch.dead[0].kind != "unprocessable", batch.dead[0].detail
        return
    result = VALIDATOR.validate(topic, raw_value, NOW)
    assert isinstance(result, AccessEvent | HealthReport | DeviceRegistration)
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
    assert stored.pop("kafka_key") == key_text
    for name, value in stored.items():
        expected = getattr(result, name)
        if isinstance(expected, uuid.UUID):
            expected = str(expected)
            value = str(value)
        assert value == expected, name


naive_or_aware = st.one_of(
    moments,
    moments.map(lambda d: d.replace(tzinfo=None)),  # v0 sends UTC without an offset
)
device_ids_v0 = st.one_of(st.integers(-(2**64), 2**64), text)
access_v0 = st.fixed_dictionaries(
    {
        "event_id": text,
        "device_id": device_ids_v0,
        "event_ts": naive_or_aware.map(lambda d: d.isoformat()),
        "event_type": st.sampled_from(["open", "close", "fail", "command_failed", "explode"]),
        "trigger_source": st.sampled_from(["app", "button", "remote", "voice", "keypad"]),
    }
)
health_v0 = st.fixed_dictionaries(
    {
        "device_id": device_ids_v0,
        "reported_at": naive_or_aware.map(lambda d: d.isoformat()),
        "battery_pct": big_ints,
        "signal_strength_dbm": big_ints,
        "is_online": st.booleans(),
    }
)
COLUMNS_V0 = {
    EVENTS: (
        "access_events",
        {
            "event_id::text": "v0_uuid",
            "source_event_id": "event_id",
            "device_id": "device_id",
            "event_ts": "event_ts",
            "event_type": "event_type",
            "trigger_source": "trigger_source",
            "schema_version": "schema_version",
        },
    ),
    HEALTH: (
        "device_health",
        {
            "device_id": "device_id",
            "reported_at": "reported_at",
            "battery_pct": "battery_pct",
            "signal_strength_dbm": "signal_strength_dbm",
            "is_online": "is_online",
            "schema_version": "schema_version",
        },
    ),
}


@settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    topic_and_body=st.one_of(
        access_v0.map(lambda b: (EVENTS, b)), health_v0.map(lambda b: (HEALTH, b))
    ),
)
def test_accepted_v0_records_are_stored_with_their_original_values(
    pg: EphemeralPostgres, topic_and_body: tuple[str, dict]
) -> None:
    topic, body = topic_and_body
    try:
        raw_value = json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raw_value = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    offset = next(_offsets)
    record = Record(PREFIX + topic, 1, offset, 1_700_000_000_123, b"k", raw_value)
    batch = Batch()
    absorb_record(batch, VALIDATOR.validate, record, topic, NOW)
    if batch.dead:
        assert batch.dead[0].kind != "unprocessable", batch.dead[0].detail
        return
    result = VALIDATOR.validate(topic, raw_value, NOW)
    assert isinstance(result, AccessEventV0 | HealthReportV0)
    sink = PostgresSink(pg.dsn(user="smart_access_loader"), PREFIX + "sink-v0", "property")
    try:
        outcome = sink.write(batch)
    finally:
        sink.close()
    assert outcome.rows == 1 and outcome.db_rejected == 0
    table, columns = COLUMNS_V0[topic]
    conn = psycopg2.connect(pg.dsn())
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"select {', '.join(columns)} from raw.{table} "
                "where kafka_topic = %s and kafka_partition = 1 and kafka_offset = %s",
                (PREFIX + topic, offset),
            )
            (row,) = cur.fetchall()
    finally:
        conn.close()
    for (column, attribute), value in zip(columns.items(), row, strict=True):
        if attribute == "v0_uuid":
            assert isinstance(result, AccessEventV0)
            expected: object = str(v0_event_uuid(result.device_id, result.event_id))
        else:
            expected = getattr(result, attribute)
        if column == "device_id":
            expected = str(expected)
        assert value == expected, column
