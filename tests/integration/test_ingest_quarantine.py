"""Records nobody foresaw are quarantined; the consumer process never restarts on data.

Each case here once stopped all ingestion: the process died on a record, the
supervisor restarted it, and the same batch came back. Now the record is
dead-lettered with a precise kind, its neighbours land exactly once, and the
consumer's PID stays the same.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from ingest_helpers import (
    add_constraint,
    assert_exactly_once,
    consumer_process,
    counts,
    drop_constraint,
    event,
    new_prefix,
    produce,
    query,
    reject_marked_user,
    start_consumer,
    stop_consumer,
    wait_until,
)
from test_ingest_replay import positions, replay

from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.contracts import AccessEvent, Validator
from streaming.topics import DLQ, EVENTS, HEALTH, ensure_topics

BROKER_LIMIT = 1_048_588  # the topic's max.message.bytes (Kafka's default)
POISON_TS = "2001-02-03T04:05:06+00:00"
IMPLAUSIBLE = "implausible_timestamp"


def health(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "schema_version": 1,
        "device_id": "dev-1",
        "reported_at": datetime.now(UTC).isoformat(),
        "battery_pct": 80,
        "signal_strength_dbm": -60,
        "is_online": True,
        "firmware_version": "1.0.0",
    }
    body.update(changes)
    return body


def encode(body: object) -> bytes:
    return json.dumps(body).encode()


def produce_large(kafka: EphemeralKafka, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    producer = Producer({**kafka.client_config(), "message.max.bytes": BROKER_LIMIT + 1024})
    where: list[tuple[int, int]] = []

    def done(err: object, msg: object) -> None:
        assert err is None, err
        where.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    producer.produce(topic, key=key, value=value, on_delivery=done)
    assert producer.flush(60) == 0
    return where[0]


def dlq_messages(kafka: EphemeralKafka, prefix: str) -> list[object]:
    probe = Consumer(
        {
            **kafka.client_config(),
            "group.id": prefix + "dlq-probe",
            "enable.auto.commit": False,
            "fetch.max.bytes": 4 * BROKER_LIMIT,
        }
    )
    try:
        ends = {
            p: probe.get_watermark_offsets(TopicPartition(prefix + DLQ, p), timeout=10)[1]
            for p in range(3)
        }
        probe.assign([TopicPartition(prefix + DLQ, p, 0) for p in range(3)])
        seen: list[object] = []
        deadline = time.monotonic() + 30
        while len(seen) < sum(ends.values()) and time.monotonic() < deadline:
            seen += [m for m in probe.consume(100, timeout=1) if m.error() is None]
        return seen
    finally:
        probe.close()


def test_no_hostile_record_changes_the_consumer_pid(
    kafka: EphemeralKafka, pg: EphemeralPostgres, tmp_path: Path
) -> None:
    prefix = new_prefix(kafka)
    # a refusal on a row *derived* from the batch (its stats), not on the record's own row
    constraint = f"stats_reject_{prefix.strip('.')}"
    add_constraint(
        pg, "ops.ingest_batches", constraint, f"min_event_at is distinct from '{POISON_TS}'"
    )
    log = tmp_path / "consumer.log"
    proc = consumer_process(
        kafka, pg, prefix, "--batch-size", "500", "--batch-timeout", "0.5", log=log
    )
    try:
        pid = proc.pid
        hostile: list[tuple[str, bytes | None, bytes | None, str]] = [
            (EVENTS, b"dev-2", encode(event(event_ts="2026-11-30T10:00:00+16:00")), "out_of_range"),
            (EVENTS, b"dev-3", encode(event(event_ts="2026-11-30T10:00:00-23:59")), "out_of_range"),
            (
                HEALTH,
                b"dev-4",
                encode(health(reported_at="1900-01-01T00:00:00Z")),
                "implausible_timestamp",
            ),
            (
                EVENTS,
                b"dev-5",
                encode(event(event_ts="1970-01-01T00:00:00Z")),
                "implausible_timestamp",
            ),
            (EVENTS, b"dev-6", encode(event(event_ts=POISON_TS)), "db_rejected"),
            (EVENTS, b"dev-7", b'{"a":' * 2000 + b"1" + b"}" * 2000, "too_deep"),
            (EVENTS, b"\xff\xfe", encode(event()), "invalid_key"),
            (EVENTS, b"dev-8", b"\xc3\x28 not utf-8", "not_utf8"),
        ]
        records: list[tuple[str, bytes | None, bytes | None]] = []
        tags: list[object] = []
        for i in range(600):
            records.append((EVENTS, f"dev-{i % 40}".encode(), encode(event(device_id=f"dev-{i}"))))
            tags.append(True)
            if i % 60 == 30 and hostile:
                topic, key, value, kind = hostile.pop()
                records.append((topic, key, value))
                tags.append(kind)
        records += [(t, k, v) for t, k, v, _kind in hostile]
        tags += [kind for *_rest, kind in hostile]
        produced = produce(kafka, prefix, records, tags)
        # within 200 bytes of the broker's limit: the DLQ copy must still fit
        big_value = b'{"pad": "' + b"x" * (BROKER_LIMIT - 200 - 64) + b'"}'
        big_at = produce_large(kafka, prefix + EVENTS, b"dev-9", big_value)
        produced[(prefix + EVENTS, *big_at)] = "too_large"
        expected = len(produced)
        wait_until(lambda: sum(counts(pg, prefix).values()) >= expected, 90, "every record")
        time.sleep(1.0)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert proc.pid == pid
    finally:
        proc.terminate()
        proc.wait(30)
        drop_constraint(pg, "ops.ingest_batches", constraint)
    assert_exactly_once(pg, prefix, {c: tag is True for c, tag in produced.items()})
    kinds = {
        (t, p, o): (kind, detail, payload)
        for t, p, o, kind, detail, payload in query(
            pg,
            "select kafka_topic, kafka_partition, kafka_offset, error_kind, error_detail, payload "
            "from raw.dead_letters where kafka_topic like %s",
            (prefix + "%",),
        )
    }
    for coordinates, tag in produced.items():
        if tag is not True:
            assert kinds[coordinates][0] == tag, (tag, kinds[coordinates][1])
    _kind, _detail, big_payload = kinds[(prefix + EVENTS, *big_at)]
    assert bytes(big_payload) == big_value  # raw.dead_letters keeps the full bytes
    poison = next(v for c, v in kinds.items() if produced[c] == "db_rejected")
    assert constraint in poison[1]

    copies = dlq_messages(kafka, prefix)
    by_source = {
        (dict(m.headers())["source_partition"], dict(m.headers())["source_offset"]): m
        for m in copies
    }
    big_copy = by_source[(str(big_at[0]).encode(), str(big_at[1]).encode())]
    headers = dict(big_copy.headers())
    assert headers["error_kind"] == b"too_large"
    assert headers["payload_truncated"] == str(len(big_value)).encode()
    assert len(big_copy.value()) < len(big_value) and big_value.startswith(big_copy.value())
    assert len(copies) == sum(1 for tag in produced.values() if tag is not True)


def test_replay_across_a_row_the_database_once_rejected(
    kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    """The replay path (rows already present) isolates a rejected row too."""
    prefix = new_prefix(kafka)
    constraint = reject_marked_user(pg, prefix, "replay_reject")
    try:
        users = [f"user-{i}" for i in range(300)]
        users[17] = users[211] = "db-says-no"
        produced = produce(
            kafka,
            prefix,
            ((EVENTS, b"dev-1", encode(event(user_id=u))) for u in users),
            [u != "db-says-no" for u in users],
        )
        ends: dict[tuple[str, int], int] = {}
        for t, p, o in produced:
            ends[(t, p)] = max(ends.get((t, p), 0), o + 1)
        for round_ in range(2):  # land, then replay everything over the landed rows
            if round_:
                done = replay(kafka, pg, prefix, "--from-beginning")
                assert done.returncode == 0, done.stderr
            consumer, thread = start_consumer(kafka, pg, prefix, batch_size=5000)
            try:
                wait_until(lambda: positions(pg, prefix) == ends, 60, "the consumer to catch up")
                assert thread.is_alive()
            finally:
                stop_consumer(consumer, thread)
            assert consumer.totals["batches"] >= 1
    finally:
        drop_constraint(pg, "raw.access_events", constraint)
    assert_exactly_once(pg, prefix, produced)
    assert counts(pg, prefix)["dead_letters"] == 2


def test_bisection_lands_every_partition_in_order(
    kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    """A failing batch split into halves never commits a position past a record it did
    not land: after isolating one record in a 2 000-record batch over six partitions,
    stored positions equal the log ends and nothing is missing or doubled."""
    prefix = new_prefix(kafka)
    constraint = f"bisect_reject_{prefix.strip('.')}"
    add_constraint(
        pg, "ops.ingest_batches", constraint, f"min_event_at is distinct from '{POISON_TS}'"
    )
    try:
        bodies = [encode(event(device_id=f"dev-{i}")) for i in range(2000)]
        bodies[1234] = encode(event(event_ts=POISON_TS))
        produced = produce(
            kafka,
            prefix,
            ((EVENTS, f"k{i % 97}".encode(), b) for i, b in enumerate(bodies)),
            [i != 1234 for i in range(2000)],
        )
        ends: dict[tuple[str, int], int] = {}
        for t, p, o in produced:
            ends[(t, p)] = max(ends.get((t, p), 0), o + 1)
        consumer, thread = start_consumer(kafka, pg, prefix, batch_size=5000, batch_timeout=3.0)
        try:
            wait_until(lambda: positions(pg, prefix) == ends, 90, "the consumer to catch up")
            assert thread.is_alive()
        finally:
            stop_consumer(consumer, thread)
    finally:
        drop_constraint(pg, "ops.ingest_batches", constraint)
    assert_exactly_once(pg, prefix, produced)
    ((kind,),) = query(
        pg, "select error_kind from raw.dead_letters where kafka_topic like %s", (prefix + "%",)
    )
    assert kind == "db_rejected"


def test_future_and_past_bounds_are_configurable(
    kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    """The plausibility floor follows --min-timestamp: a 1999 event is valid below it."""
    prefix = new_prefix(kafka)
    produced = produce(
        kafka,
        prefix,
        [(EVENTS, b"dev-1", encode(event(event_ts="1999-06-01T00:00:00Z")))],
        [True],
    )
    consumer, thread = start_consumer(
        kafka, pg, prefix, min_timestamp=datetime(1990, 1, 1, tzinfo=UTC)
    )
    try:
        wait_until(lambda: counts(pg, prefix)["access_events"] == 1, 60, "the 1999 event")
    finally:
        stop_consumer(consumer, thread)
    assert_exactly_once(pg, prefix, produced)


def test_topic_recreated_under_a_running_consumer_stops_that_partition_only(
    kafka: EphemeralKafka, pg: EphemeralPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """Offsets reused by a new log are detected, never silently dropped, and the
    documented reset lands the new log beside the old one."""
    prefix = new_prefix(kafka)
    old = produce(
        kafka, prefix, ((EVENTS, f"k{i}".encode(), encode(event())) for i in range(300)), None
    )
    consumer, thread = start_consumer(
        kafka, pg, prefix, consumer_overrides={"topic.metadata.refresh.interval.ms": 2000}
    )
    try:
        wait_until(lambda: counts(pg, prefix)["access_events"] == 300, 60, "the old log")
        admin = AdminClient(kafka.client_config())
        for future in admin.delete_topics([prefix + EVENTS]).values():
            future.result()
        wait_until(
            lambda: prefix + EVENTS not in admin.list_topics(timeout=10).topics, 30, "deletion"
        )
        time.sleep(3)
        ensure_topics(kafka.client_config(), prefix=prefix)
        new = produce(
            kafka, prefix, ((EVENTS, f"k{i}".encode(), encode(event())) for i in range(40)), None
        )
        wait_until(
            lambda: bool(
                query(
                    pg,
                    "select 1 from ops.consumer_halts where topic = %s and resolved_at is null",
                    (prefix + EVENTS,),
                )
            ),
            90,
            "a halt of the recreated topic",
        )
        # the other topics go on
        more = produce(
            kafka, prefix, ((HEALTH, f"k{i}".encode(), encode(health())) for i in range(30)), None
        )
        wait_until(lambda: counts(pg, prefix)["device_health"] == 30, 60, "health reports")
        assert thread.is_alive()
    finally:
        stop_consumer(consumer, thread)
    assert counts(pg, prefix)["access_events"] == 300  # nothing of the new log was dropped
    halts = query(
        pg,
        "select reason, stored_offset, log_end from ops.consumer_halts "
        "where topic = %s and resolved_at is null",
        (prefix + EVENTS,),
    )
    assert halts and all(r in ("topic_recreated", "offset_beyond_log_end") for r, _s, _e in halts)
    lines = [r.getMessage() for r in caplog.records if "stopped: stored position" in r.getMessage()]
    assert lines and all("--accept-new-log --topic smart-access.events" in ln for ln in lines)

    done = replay(kafka, pg, prefix, "--accept-new-log")
    assert done.returncode == 0, done.stderr
    again = replay(kafka, pg, prefix, "--accept-new-log")
    assert again.returncode == 1 and "nothing to accept" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    consumer, thread = start_consumer(kafka, pg, prefix)
    try:
        wait_until(lambda: counts(pg, prefix)["access_events"] == 340, 60, "the new log")
    finally:
        stop_consumer(consumer, thread)
    rows = query(
        pg,
        "select kafka_partition, kafka_offset, kafka_log_epoch from raw.access_events "
        "where kafka_topic = %s",
        (prefix + EVENTS,),
    )
    assert len(rows) == len(set(rows)) == 340
    old_rows = {(p, o) for p, o, e in rows if e == 0}
    new_rows = {(p, o) for p, o, e in rows if e == 1}
    assert old_rows == {(p, o) for _t, p, o in old}
    assert new_rows == {(p, o) for _t, p, o in new}
    assert len(more) == 30
    assert not query(
        pg,
        "select 1 from ops.consumer_halts where topic = %s and resolved_at is null",
        (prefix + EVENTS,),
    )


class LeakyValidator(Validator):
    """A validator with holes, standing in for the next defect nobody foresaw: it lets
    text PostgreSQL's client encoding cannot carry through, and crashes on a marker."""

    def validate(self, topic: str, value: bytes | None, now: datetime) -> Any:
        result = super().validate(topic, value, now)
        if isinstance(result, AccessEvent) and result.user_id == "leak":
            result.user_id = "lone \ud800 surrogate"
        if isinstance(result, AccessEvent) and result.user_id == "boom":
            raise RuntimeError("validator bug")
        return result


def test_defects_of_the_consumer_itself_quarantine_the_record(
    kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    prefix = new_prefix(kafka)
    users = [f"user-{i}" for i in range(200)]
    users[20], users[150], users[151] = "leak", "boom", "leak"
    produced = produce(
        kafka,
        prefix,
        ((EVENTS, f"k{i % 7}".encode(), encode(event(user_id=u))) for i, u in enumerate(users)),
        users,
    )
    consumer, thread = start_consumer(kafka, pg, prefix, batch_size=1000, batch_timeout=2.0)
    consumer.validator = LeakyValidator()
    try:
        wait_until(lambda: sum(counts(pg, prefix).values()) >= 200, 60, "every record")
        assert thread.is_alive()
    finally:
        stop_consumer(consumer, thread)
    assert_exactly_once(pg, prefix, {c: u not in ("leak", "boom") for c, u in produced.items()})
    kinds = {
        produced[(t, p, o)]: kind
        for t, p, o, kind in query(
            pg,
            "select kafka_topic, kafka_partition, kafka_offset, error_kind from raw.dead_letters "
            "where kafka_topic like %s",
            (prefix + "%",),
        )
    }
    assert kinds == {"leak": "sink_error", "boom": "unprocessable"}
