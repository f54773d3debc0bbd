"""The ingest benchmark's peer (Kafka Connect + the Debezium JDBC sink) against the real
broker and PostgreSQL: it lands the same rows our contract reads from the same
messages, once each, so `make bench-ingest` compares like with like."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg2
from confluent_kafka import Producer

from benchmarks import peer
from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.contracts import AccessEvent, HealthReport, Invalid, Validator
from streaming.simulator import Simulator, SimulatorConfig
from streaming.topics import EVENTS, HEALTH

MESSAGES = 4000


def test_the_peer_lands_every_message_once_with_our_values(
    kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    peer.create_topics(kafka)
    sim = Simulator(SimulatorConfig(households=200, rate=100, seed=11))
    producer = Producer({**kafka.client_config(), "linger.ms": 5})
    messages = [sim.next() for _ in range(MESSAGES)]
    for m in messages:
        topic, value = peer.envelope(m.topic, m.value)
        producer.produce(topic, key=m.key, value=value)
    assert producer.flush(30) == 0

    run = peer.drain(kafka, pg, MESSAGES, tasks=1, timeout=180)
    assert run.rows == MESSAGES
    assert run.duplicates == 0
    assert run.rows_per_s > 0

    validator = Validator()
    now = datetime.now(UTC)
    events, health = set(), set()
    for m in messages:
        record = validator.validate(m.topic, m.value, now)
        assert not isinstance(record, Invalid)
        if m.topic == EVENTS:
            assert isinstance(record, AccessEvent)
            events.add(
                (str(record.event_id), record.device_id, record.household_id, record.event_ts,
                 record.event_type, record.trigger_source, record.user_id, record.failure_reason)
            )  # fmt: skip
        elif m.topic == HEALTH:
            assert isinstance(record, HealthReport)
            health.add((record.device_id, record.reported_at, record.battery_pct, record.is_online))
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "select event_id::text, device_id, household_id, event_ts, event_type,"
            " trigger_source, user_id, failure_reason from public.peer_access_events"
        )
        assert set(cur.fetchall()) == events
        cur.execute(
            "select device_id, reported_at, battery_pct, is_online from public.peer_device_health"
        )
        assert set(cur.fetchall()) == health
        # the coordinates come from the records themselves (InsertField), per partition
        cur.execute(
            "select kafka_partition, min(kafka_offset), max(kafka_offset), count(*)"
            " from public.peer_access_events group by 1"
        )
        for _, first, last, count in cur.fetchall():
            assert (first, last) == (0, count - 1)
    conn.close()
