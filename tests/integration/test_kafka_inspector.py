"""The Kafka topic inspector (:8090) against a real broker: functions and every page."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from analytics.kafka_ui import inspector
from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.topics import DLQ
from tests.apptest_support import (
    KAFKA_UI,
    commit_group_offsets,
    frame_with,
    metrics,
    open_page,
    rerun,
    texts,
)
from tests.dashboard_seed import seeded_database

RUN = uuid.uuid4().hex[:8]
TOPIC = f"inspector-test-{RUN}"
COMPACTED = f"inspector-compacted-{RUN}"
GROUP = f"inspector-group-{RUN}"
PER_PARTITION = {0: 12, 1: 5, 2: 0}  # records produced into each partition of TOPIC
COMMITTED = {0: 4, 1: 5}  # the group's committed offsets: lag 8 on p0, 0 on p1


@pytest.fixture(scope="module")
def seeded(kafka: EphemeralKafka) -> dict[str, object]:
    admin = AdminClient(kafka.client_config())
    futures = admin.create_topics(
        [
            NewTopic(TOPIC, 3, 1, config={"cleanup.policy": "delete", "retention.ms": "7200000"}),
            NewTopic(COMPACTED, 1, 1, config={"cleanup.policy": "compact"}),
        ]
    )
    for future in futures.values():
        future.result()
    producer = Producer(kafka.client_config())
    for partition, count in PER_PARTITION.items():
        for n in range(count):
            producer.produce(
                TOPIC,
                key=f"device-{partition}",
                value=json.dumps({"device_id": f"device-{partition}", "n": n}),
                partition=partition,
                headers=[("source", b"test")],
            )
    producer.produce(COMPACTED, key="k", value=b"not json \xff")
    dlq_keys = {}
    for kind in ("invalid_json", "out_of_domain", "invalid_json"):
        key = f"dlq-{RUN}-{uuid.uuid4().hex[:6]}"
        dlq_keys[key] = kind
        producer.produce(
            DLQ,
            key=key,
            value=b"{broken",
            headers=[("error_kind", kind.encode()), ("error_detail", f"detail of {kind}".encode())],
        )
    assert producer.flush(30) == 0
    committed = [TopicPartition(TOPIC, p, o) for p, o in COMMITTED.items()]
    commit_group_offsets(kafka.bootstrap, GROUP, committed)
    return {"dlq_keys": dlq_keys}


@pytest.fixture
def kafka_env(
    kafka: EphemeralKafka, pg: EphemeralPostgres, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    for key, value in pg.env(user="smart_access_analyst").items():
        monkeypatch.setenv(key, value)
    # The dead-letter view reads dbt's staging view of raw.dead_letters.
    monkeypatch.setenv("PGDATABASE", seeded_database(pg).database)
    yield


def _watermarks(kafka: EphemeralKafka, topic: str, partition: int) -> tuple[int, int]:
    consumer = Consumer({**kafka.client_config(), "group.id": "watermarks"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()


def test_topics_report_partitions_policy_retention_and_counts(
    kafka: EphemeralKafka, seeded: dict[str, object]
) -> None:
    found = {t.name: t for t in inspector.topics(kafka.client_config())}
    mine = found[TOPIC]
    assert [p.partition for p in mine.partitions] == [0, 1, 2]
    assert [p.end_offset for p in mine.partitions] == [12, 5, 0]
    assert mine.messages == 17
    assert mine.cleanup_policy == "delete"
    assert mine.retention_ms == 7_200_000
    assert found[COMPACTED].cleanup_policy == "compact"
    assert found["smart-access.devices"].cleanup_policy == "compact"
    for t in found.values():  # the broker's own view agrees on every topic
        for p in t.partitions:
            assert (p.start_offset, p.end_offset) == _watermarks(kafka, t.name, p.partition)
    assert not any(name.startswith("__") for name in found)


def test_groups_report_lag_per_partition(kafka: EphemeralKafka, seeded: dict[str, object]) -> None:
    group = {g.group_id: g for g in inspector.consumer_groups(kafka.client_config())}[GROUP]
    lags = {(p.topic, p.partition): (p.committed_offset, p.lag) for p in group.partitions}
    assert lags == {(TOPIC, 0): (4, 8), (TOPIC, 1): (5, 0)}
    assert group.total_lag == 8


def test_latest_messages_are_newest_first_with_key_headers_and_json(
    kafka: EphemeralKafka, seeded: dict[str, object]
) -> None:
    latest = inspector.latest_messages(kafka.client_config(), TOPIC, 0, limit=3)
    assert [m.offset for m in latest] == [11, 10, 9]
    first = latest[0]
    assert first.key == "device-0"
    assert first.headers == {"source": "test"}
    assert first.timestamp is not None
    assert first.is_json and json.loads(first.value) == {"device_id": "device-0", "n": 11}
    assert "\n" in first.value  # pretty-printed
    everywhere = inspector.latest_messages(kafka.client_config(), TOPIC, None, limit=2)
    assert sorted((m.partition, m.offset) for m in everywhere) == [(0, 10), (0, 11), (1, 3), (1, 4)]
    binary = inspector.latest_messages(kafka.client_config(), COMPACTED, None, limit=5)
    assert len(binary) == 1 and not binary[0].is_json


def test_browsing_joins_no_group_and_commits_nothing(
    kafka: EphemeralKafka, seeded: dict[str, object]
) -> None:
    before = {g.group_id for g in inspector.consumer_groups(kafka.client_config())}
    inspector.latest_messages(kafka.client_config(), TOPIC, None, limit=5)
    after = {g.group_id for g in inspector.consumer_groups(kafka.client_config())}
    assert not {g for g in after - before if g.startswith("smart-access-inspector")}


def test_dead_letter_reason_comes_from_headers() -> None:
    assert inspector.dead_letter_reason({"error_kind": "invalid_json", "error_detail": "x"}) == (
        "invalid_json",
        "x",
    )
    assert inspector.dead_letter_reason({"other": "1"}) == ("?", "")


def test_topics_page_shows_every_topic_with_counts(
    kafka: EphemeralKafka, seeded: dict[str, object], kafka_env: None
) -> None:
    at = open_page(KAFKA_UI)
    table = frame_with(at, "topic", "partitions", "cleanup.policy", "retention", "messages")
    row = table.set_index("topic").loc[TOPIC]
    assert (row["partitions"], row["cleanup.policy"], row["retention"]) == (3, "delete", "2 hours")
    assert (row["end offsets (sum)"], row["messages"]) == (17, 17)
    assert table.set_index("topic").loc["smart-access.devices", "retention"] == "forever"
    truth = sum(
        hi - lo
        for t in inspector.topics(kafka.client_config())
        for lo, hi in [(p.start_offset, p.end_offset) for p in t.partitions]
    )
    assert int(metrics(at)["Messages"]) == truth
    assert int(metrics(at)["Topics"]) == len(table)


def test_groups_page_shows_lag(seeded: dict[str, object], kafka_env: None) -> None:
    at = open_page(KAFKA_UI, "views/groups.py", group=GROUP)
    groups = frame_with(at, "group", "state", "total lag").set_index("group")
    assert groups.loc[GROUP, "total lag"] == 8
    per_partition = [
        f for f in (df.value for df in at.dataframe) if "lag" in f.columns and "topic" in f.columns
    ]
    mine = next(f for f in per_partition if (f.topic == TOPIC).any())
    assert mine.set_index("partition")["lag"].to_dict() == {0: 8, 1: 0}


def test_messages_page_browses_a_partition(seeded: dict[str, object], kafka_env: None) -> None:
    at = open_page(KAFKA_UI, "views/messages.py")
    at.selectbox(key="msg_topic").select(TOPIC)
    rerun(at)
    at.selectbox(key="msg_partition").select("0")
    at.number_input(key="msg_limit").set_value(5)
    rerun(at)
    table = frame_with(at, "partition", "offset", "key", "headers", "value")
    assert table.offset.tolist() == [11, 10, 9, 8, 7]
    assert set(table.key) == {"device-0"}
    assert set(table.headers) == {"source=test"}
    assert metrics(at)["Messages shown"] == "5"
    assert any('"n": 11' in c.value for c in at.code)
    # All partitions: the latest 5 of each non-empty one.
    at.selectbox(key="msg_partition").select("all")
    rerun(at)
    assert metrics(at)["Messages shown"] == "10"


def test_dead_letters_page_shows_reasons(
    seeded: dict[str, object], kafka_env: None, pg: EphemeralPostgres
) -> None:
    import psycopg2

    database = seeded_database(pg).database
    with psycopg2.connect(pg.dsn(database)) as conn, conn.cursor() as cur:
        cur.execute(
            "insert into raw.dead_letters (kafka_topic, kafka_partition, kafka_offset, "
            "kafka_key, payload, error_kind, error_detail) values "
            "(%s, 0, %s, %s, %s, 'schema_violation', 'event_type: bad')",
            (f"inspector-{RUN}", 1, b"dev-1", b'{"event_type": "bad"}'),
        )
    try:
        at = open_page(KAFKA_UI, "views/dead_letters.py")
    finally:  # the seeded database is shared: leave raw.dead_letters as it was
        with psycopg2.connect(pg.dsn(database)) as conn, conn.cursor() as cur:
            cur.execute(
                "delete from raw.dead_letters where kafka_topic = %s", (f"inspector-{RUN}",)
            )
    messages = frame_with(at, "reason", "detail", "key", "headers")
    mine = messages[messages.key.str.startswith(f"dlq-{RUN}")]
    expected = seeded["dlq_keys"]
    assert dict(zip(mine.key, mine.reason, strict=True)) == expected
    assert set(mine.detail) == {f"detail of {k}" for k in expected.values()}  # type: ignore[union-attr]
    counts = at.table[0].value
    shown = frame_with(at, "reason", "detail", "key", "headers")
    assert counts["messages"].to_dict() == shown.reason.value_counts().to_dict()
    assert counts.loc["invalid_json", "messages"] >= 2
    assert int(metrics(at)["Messages shown"]) == len(shown)
    reasons = frame_with(at, "error_kind", "kafka_topic", "dead_letters")
    row = reasons[reasons.kafka_topic == f"inspector-{RUN}"]
    assert row.error_kind.tolist() == ["schema_violation"] and row.dead_letters.tolist() == [1]
    samples = frame_with(at, "error_detail", "payload_bytes")
    assert "event_type: bad" in samples.error_detail.tolist()


def test_pages_explain_an_unreachable_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    from stack.ephemeral import free_port

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    at = open_page(KAFKA_UI)
    assert "did not answer" in texts(at)
    assert "KAFKA_BOOTSTRAP_SERVERS" in texts(at)


def test_dead_letters_page_explains_a_database_without_dbt_views(
    kafka: EphemeralKafka, pg: EphemeralPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analytics.ui import NO_MARTS
    from tests.dashboard_seed import empty_database

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    for key, value in pg.env(user="smart_access_analyst").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PGDATABASE", empty_database(pg))
    at = open_page(KAFKA_UI, "views/dead_letters.py")
    assert NO_MARTS in texts(at)
    assert "stg_smart_access__dead_letters" in texts(at)


def test_brokers_page_shows_the_broker_and_its_controller_as_the_cluster_reports(
    kafka: EphemeralKafka, kafka_env: None
) -> None:
    at = open_page(KAFKA_UI, "views/brokers.py")
    table = frame_with(at, "broker", "address", "controller", "partitions led")
    admin = AdminClient(kafka.client_config())  # kept: a collected client drops its futures
    described = admin.describe_cluster(request_timeout=10).result()
    assert list(table["broker"]) == [node.id for node in described.nodes]
    assert list(table["address"]) == [kafka.bootstrap]
    assert list(table["controller"]) == ["active"]
    truth = inspector.cluster(kafka.client_config())
    assert int(table["partitions led"].sum()) == truth.partitions > 0
    shown = metrics(at)
    assert (shown["Brokers"], shown["Under-replicated partitions"]) == ("1", "0")
