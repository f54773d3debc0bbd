"""Bad payloads are dead-lettered precisely; good neighbours land byte-exact."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, TopicPartition
from ingest_helpers import (
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

from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.topics import DLQ, EVENTS, HEALTH


def encode(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


TRICKY_TEXT = [
    "tab\there",
    "new\nline and\r\ncrlf",
    "back\\slash \\N \\. end\\",
    "quotes \" and ' and `",
    "non-ASCII: Grüße, 東京, emoji 🚪🔑, RTL ‏שלום",
    "comma, semicolon; pipe | brace {} bracket []",
]
BAD = [
    (b"this is not json", "not_json"),
    (b'{"schema_version": 1, "device_id": "\xff\xfe"}', "not_utf8"),
    (encode(event(household_id=42)), "wrong_type"),
    (encode({k: v for k, v in event().items() if k != "device_id"}), "missing_field"),
    (encode(event(event_type="explode")), "out_of_domain"),
    (encode(event(device_id="d" * 500)), "out_of_range"),
    (encode(event(user_id="nul\u0000inside")), "nul_character"),
    (
        encode(event(event_ts=(datetime.now(UTC) + timedelta(days=1)).isoformat())),
        "future_timestamp",
    ),
    (b'{"nest":' + b"[" * 3000 + b"]" * 3000 + b"}", "too_deep"),
    (encode(event(padding="x" * 20_000)), "too_large"),
    (encode(event(event_type="fail")), "rule_violation"),
    (encode(event(event_id="nope")), "invalid_format"),
]


def test_bad_payloads_are_dead_lettered_and_neighbours_land_byte_exact(
    kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    prefix = new_prefix(kafka)
    records: list[tuple[str, bytes | None, bytes | None]] = []
    tags: list[object] = []
    for i, (payload, kind) in enumerate(BAD):
        text = TRICKY_TEXT[i % len(TRICKY_TEXT)]
        records.append((EVENTS, b"dev-1", encode(event(user_id=text))))
        tags.append(("good", text))
        records.append((EVENTS, b"dev-1", payload))
        tags.append(("bad", kind, payload))
    records.append((EVENTS, b"\xff\xfe-key", encode(event())))
    tags.append(("bad", "invalid_key", records[-1][2]))
    records.append((HEALTH, b"dev-1", None))
    tags.append(("bad", "not_json", None))
    produced = produce(kafka, prefix, records, tags)
    consumer, thread = start_consumer(kafka, pg, prefix, batch_size=1000)
    try:
        wait_until(lambda: sum(counts(pg, prefix).values()) >= len(records), 60, "all records")
        assert thread.is_alive(), "the consumer must survive bad payloads"
    finally:
        stop_consumer(consumer, thread)

    dead = {
        (t, p, o): (kind, detail, bytes(payload) if payload is not None else None)
        for t, p, o, kind, detail, payload in query(
            pg,
            "select kafka_topic, kafka_partition, kafka_offset, error_kind, error_detail, payload "
            "from raw.dead_letters where kafka_topic like %s",
            (prefix + "%",),
        )
    }
    expected_dead = {c: tag[1] for c, tag in produced.items() if tag[0] == "bad"}
    assert {c: v[0] for c, v in dead.items()} == expected_dead
    assert all(detail for _kind, detail, _payload in dead.values())
    for coordinate, (_kind, _detail, payload) in dead.items():
        assert payload == produced[coordinate][2], "dead letter keeps the original bytes"

    stored = {
        (t, p, o): user
        for t, p, o, user in query(
            pg,
            "select kafka_topic, kafka_partition, kafka_offset, user_id from raw.access_events "
            "where kafka_topic like %s",
            (prefix + "%",),
        )
    }
    expected_good = {c: tag[1] for c, tag in produced.items() if tag[0] == "good"}
    assert stored == expected_good  # byte-exact round trip of tricky text

    dlq = Consumer(
        {
            **kafka.client_config(),
            "group.id": prefix + "dlq-check",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    dlq.assign([TopicPartition(prefix + DLQ, p, 0) for p in range(3)])
    seen = {}
    try:
        for _ in range(100):
            msg = dlq.poll(0.5)
            if msg is not None and not msg.error():
                headers = {k: v.decode() for k, v in msg.headers()}
                coordinate = (
                    headers["source_topic"],
                    int(headers["source_partition"]),
                    int(headers["source_offset"]),
                )
                seen[coordinate] = headers["error_kind"]
                assert headers["error_detail"]
            if len(seen) == len(expected_dead):
                break
    finally:
        dlq.close()
    assert seen == expected_dead


def test_row_the_database_rejects_is_isolated(kafka: EphemeralKafka, pg: EphemeralPostgres) -> None:
    """A constraint the validator knows nothing about: that row alone is dead-lettered."""
    prefix = new_prefix(kafka)
    constraint = reject_marked_user(pg, prefix, "reject")
    try:
        users = [f"user-{i}" for i in range(400)]
        users[137] = users[301] = "db-says-no"
        produced = produce(
            kafka, prefix, ((EVENTS, b"dev-1", encode(event(user_id=u))) for u in users), users
        )
        consumer, thread = start_consumer(kafka, pg, prefix, batch_size=5000, batch_timeout=2.0)
        try:
            wait_until(lambda: sum(counts(pg, prefix).values()) >= 400, 60, "all records")
        finally:
            stop_consumer(consumer, thread)
    finally:
        drop_constraint(pg, "raw.access_events", constraint)
    c = counts(pg, prefix)
    assert c["access_events"] == 398 and c["dead_letters"] == 2
    kinds = query(
        pg,
        "select kafka_partition, kafka_offset, error_kind, error_detail from raw.dead_letters "
        "where kafka_topic like %s",
        (prefix + "%",),
    )
    rejected = {(prefix + EVENTS, p, o) for p, o, _k, _d in kinds}
    assert {produced[c] for c in rejected} == {"db-says-no"}
    assert all(k == "db_rejected" and constraint in d for _p, _o, k, d in kinds)
