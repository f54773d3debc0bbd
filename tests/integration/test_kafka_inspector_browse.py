"""The inspector's topic details, message browser (modes, filters, bounds), contract
verdicts and landing, group members and sink positions, and deep links — each compared
with the broker's, the produced records' or PostgreSQL's own answer."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from analytics.kafka_ui import inspector
from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.topics import DEVICES, DLQ, EVENTS, HEALTH
from tests.apptest_support import KAFKA_UI, frame_with, metrics, open_page, texts
from tests.integration.ingest_helpers import (
    event,
    landed_total,
    new_prefix,
    produce,
    query,
    start_consumer,
    stop_consumer,
    wait_until,
)

RUN = uuid.uuid4().hex[:8]
TOPIC = f"browse-{RUN}"
RECORDS = 600
# When the produced records begin: ten minutes before the fixture produces them (set
# there, not at import: collection may come long before the test runs).
STARTED: dict[str, datetime] = {}


def base() -> datetime:
    return STARTED["base"]


def _body(n: int) -> dict[str, object]:
    return {
        "device_id": f"dev-{n % 7:05d}",
        "n": n,
        "meta": {"site": f"s{n % 3}", "ok": n % 2 == 0},
        "tags": [f"t{n % 5}", "x"],
    }


@pytest.fixture(scope="module")
def produced(kafka: EphemeralKafka) -> dict[tuple[int, int], int]:
    """(partition, offset) -> n of RECORDS JSON records, 0.5 s apart from base()."""
    STARTED["base"] = datetime.now(UTC) - timedelta(minutes=10)
    admin = AdminClient(kafka.client_config())
    for future in admin.create_topics(
        [NewTopic(TOPIC, 3, 1, config={"retention.ms": "86400000"})]
    ).values():
        future.result()
    producer = Producer(kafka.client_config())
    where: dict[tuple[int, int], int] = {}

    def done(n: int):  # type: ignore[no-untyped-def]
        def ack(err: object, msg: object) -> None:
            assert err is None, err
            where[(msg.partition(), msg.offset())] = n  # type: ignore[attr-defined]

        return ack

    for n in range(RECORDS):
        producer.produce(
            TOPIC,
            key=f"k{n % 11}",
            value=json.dumps(_body(n)),
            partition=n % 3,
            timestamp=int((base() + timedelta(seconds=n / 2)).timestamp() * 1000),
            on_delivery=done(n),
        )
    assert producer.flush(30) == 0
    assert len(where) == RECORDS
    return where


def _found(read: inspector.Browse) -> set[tuple[int, int]]:
    return {(m.partition, m.offset) for m in read.messages}


def test_a_json_field_filter_finds_exactly_the_produced_records(
    kafka: EphemeralKafka, produced: dict[tuple[int, int], int]
) -> None:
    config = kafka.client_config()
    cases = {
        "device_id = dev-00003": lambda n: n % 7 == 3,
        "meta.site = 's1'": lambda n: n % 3 == 1,
        "meta.ok = true": lambda n: n % 2 == 0,
        "n = 17": lambda n: n == 17,
        "tags.0 = t4": lambda n: n % 5 == 4,
        "tags.-1 = x": lambda n: True,
        "missing.path = 1": lambda n: False,
    }
    for expression, wanted in cases.items():
        read = inspector.browse(
            config, TOPIC, limit=500, scan=10_000, filters=inspector.Filters(field=expression)
        )
        truth = {coords for coords, n in produced.items() if wanted(n)}
        assert read.scanned == RECORDS, expression  # 200 a partition: all of them read
        assert _found(read) == truth, expression
    with pytest.raises(ValueError, match="field = value"):
        inspector.browse(config, TOPIC, filters=inspector.Filters(field="device_id dev-1"))


def test_key_and_substring_filters_and_the_scan_bound(
    kafka: EphemeralKafka, produced: dict[tuple[int, int], int]
) -> None:
    config = kafka.client_config()
    by_key = inspector.browse(config, TOPIC, limit=500, filters=inspector.Filters(key="k3"))
    assert _found(by_key) == {c for c, n in produced.items() if n % 11 == 3}
    assert {m.key for m in by_key.messages} == {"k3"}
    contains = inspector.browse(
        config, TOPIC, limit=500, filters=inspector.Filters(contains='"n": 12')
    )
    assert _found(contains) == {c for c, n in produced.items() if str(n).startswith("12")}
    # A filter reads at most `scan` records, the newest of each partition, and says so.
    bounded = inspector.browse(
        config, TOPIC, limit=500, scan=30, filters=inspector.Filters(field="meta.ok = true")
    )
    assert bounded.scanned == 30
    ends = {p: max(o for q, o in produced if q == p) + 1 for p in range(3)}
    assert bounded.ranges == {p: (ends[p] - 10, ends[p]) for p in range(3)}
    newest = {c for c in produced if c[1] >= ends[c[0]] - 10}
    assert _found(bounded) == {c for c in newest if produced[c] % 2 == 0}


def test_reading_from_an_offset_and_from_a_timestamp(
    kafka: EphemeralKafka, produced: dict[tuple[int, int], int]
) -> None:
    config = kafka.client_config()
    read = inspector.browse(config, TOPIC, 1, mode="offset", offset=40, limit=5)
    assert [(m.partition, m.offset) for m in read.messages] == [(1, o) for o in range(40, 45)]
    assert json.loads(read.messages[0].value) == _body(produced[(1, 40)])
    one = inspector.browse(config, TOPIC, 2, mode="offset", offset=7, limit=1)
    assert [(m.partition, m.offset) for m in one.messages] == [(2, 7)]
    since = base() + timedelta(seconds=150)  # record n=300 and later
    since = since.replace(microsecond=since.microsecond // 1000 * 1000)  # Kafka keeps ms
    read = inspector.browse(config, TOPIC, mode="timestamp", since=since, limit=4)
    assert all(m.timestamp is not None and m.timestamp >= since for m in read.messages)
    assert sorted(produced[(m.partition, m.offset)] for m in read.messages) == [300, 301, 302, 303]
    with pytest.raises(ValueError, match="has no partition 9"):
        inspector.browse(config, TOPIC, 9)


def test_topic_detail_matches_the_broker_and_its_log_directory(
    kafka: EphemeralKafka, produced: dict[tuple[int, int], int]
) -> None:
    config = kafka.client_config()
    detail = inspector.topic_detail(config, TOPIC, minutes=15)
    configs = {c.name: c for c in detail.configs}
    assert configs["retention.ms"].value == "86400000" and configs["retention.ms"].set_on_topic
    assert not configs["retention.ms"].is_default
    assert configs["segment.bytes"].source in ("default", "broker (server.properties)")
    admin = AdminClient(config)
    meta = admin.list_topics(TOPIC, timeout=10).topics[TOPIC]
    for p in detail.partitions:
        truth = meta.partitions[p.partition]
        assert (p.leader, p.replicas, p.isr) == (
            truth.leader,
            tuple(truth.replicas),
            tuple(truth.isrs),
        )
        assert p.end_offset == sum(1 for q, _ in produced if q == p.partition)
        logs = sum(f.stat().st_size for f in Path(kafka.root).rglob(f"{TOPIC}-{p.partition}/*.log"))
        assert p.size_bytes == logs > 0
    # every record carries a timestamp in the last 15 minutes, 2 per second
    assert sum(n for _, n in detail.per_minute) == RECORDS
    assert max(n for _, n in detail.per_minute) <= 120
    assert not detail.compacted
    listed = {t.name: t for t in inspector.topics(config)}[TOPIC]
    assert listed.size_bytes == sum(p.size_bytes or 0 for p in detail.partitions)
    # the produced records are stamped 10 to 5 minutes before the module started
    assert listed.last_5_minutes == 0
    recent = f"recent-{RUN}"
    for future in admin.create_topics([NewTopic(recent, 3, 1)]).values():
        future.result()
    producer = Producer(config)
    for n in range(3):
        producer.produce(recent, value=b"{}", partition=n)
    assert producer.flush(30) == 0
    assert {t.name: t for t in inspector.topics(config)}[recent].last_5_minutes == 3


@pytest.fixture(scope="module")
def landed(kafka: EphemeralKafka, pg: EphemeralPostgres) -> dict[str, object]:
    """A mix of valid and invalid records on private copies of the contract topics,
    landed by the real sink: its own verdicts are the truth for the inspector's."""
    prefix = new_prefix(kafka)
    now = datetime.now(UTC)
    v0 = {
        "event_id": "evt-1",
        "device_id": 42,
        "event_ts": now.strftime("%Y-%m-%dT%H:%M:%S"),
        "event_type": "command_failed",
        "trigger_source": "button",
    }
    health = {
        "schema_version": 1,
        "device_id": "dev-1",
        "reported_at": now.isoformat(),
        "battery_pct": 80,
        "signal_strength_dbm": -60,
        "is_online": True,
        "firmware_version": "1.0.0",
    }
    records = [
        (EVENTS, b"dev-1", json.dumps(event()).encode()),
        (EVENTS, b"dev-1", json.dumps(v0).encode()),
        (EVENTS, b"dev-1", b"{not json"),
        (EVENTS, b"\xff\xfe", json.dumps(event()).encode()),
        (EVENTS, b"dev-1", json.dumps(event(schema_version=7)).encode()),
        (EVENTS, b"dev-1", json.dumps(event(event_type="teleport")).encode()),
        (EVENTS, b"dev-1", json.dumps(event(pad="x" * 20_000)).encode()),
        (HEALTH, b"dev-1", json.dumps(health).encode()),
        (DEVICES, b"dev-1", None),
    ]
    coordinates = produce(kafka, prefix, records)
    consumer, thread = start_consumer(kafka, pg, prefix)
    try:
        wait_until(lambda: landed_total(pg, prefix) >= len(records), 60, "the sink to land all")
    finally:
        stop_consumer(consumer, thread)
    return {"prefix": prefix, "coordinates": sorted(coordinates)}


def _truth(pg: EphemeralPostgres, topic: str, partition: int, offset: int) -> tuple[str, str]:
    for table in ("access_events", "device_health", "device_registry"):
        rows = query(
            pg,
            f"select 1 from raw.{table} where kafka_topic = %s and kafka_partition = %s "
            "and kafka_offset = %s",
            (topic, partition, offset),
        )
        if rows:
            return f"raw.{table}", ""
    ((kind,),) = query(
        pg,
        "select error_kind from raw.dead_letters where kafka_topic = %s and kafka_partition = %s "
        "and kafka_offset = %s",
        (topic, partition, offset),
    )
    return "raw.dead_letters", kind


def _analyst(pg: EphemeralPostgres, kafka: EphemeralKafka, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st

    st.cache_data.clear()  # AppTests share the process: start without another test's reads
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap)
    for key, value in pg.env(user="smart_access_analyst").items():
        monkeypatch.setenv(key, value)


def test_the_verdict_is_the_sinks_and_landing_is_where_it_put_each_record(
    kafka: EphemeralKafka,
    pg: EphemeralPostgres,
    landed: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = str(landed["prefix"])
    seen = 0
    for topic in (EVENTS, HEALTH, DEVICES):
        for m in inspector.browse(kafka.client_config(), prefix + topic, limit=50).messages:
            table, kind = _truth(pg, m.topic, m.partition, m.offset)
            assert m.origin == (m.topic, m.partition, m.offset)
            if kind:
                assert m.valid is False and m.verdict.startswith(f"dead letter: {kind} — "), m
            else:
                assert m.valid is True and m.verdict.endswith(f"→ {table}"), m
            seen += 1
    assert seen == len(landed["coordinates"])  # type: ignore[arg-type]
    # Each DLQ copy is judged as its original record and looked up at its coordinates.
    copies = inspector.browse(kafka.client_config(), prefix + DLQ, limit=50).messages
    ((dead,),) = query(
        pg, "select count(*) from raw.dead_letters where kafka_topic like %s", (prefix + "%",)
    )
    assert len(copies) == dead == 5
    for m in copies:
        assert m.origin is not None
        table, kind = _truth(pg, *m.origin)
        assert table == "raw.dead_letters"
        assert m.verdict.startswith(f"dead letter: {kind} — "), m
    # The Messages page says where each record landed, from PostgreSQL as the analyst.
    _analyst(pg, kafka, monkeypatch)

    at = open_page(KAFKA_UI, "views/messages.py", topic=prefix + EVENTS, limit="50")
    table = frame_with(at, "partition", "offset", "verdict", "landed")
    assert len(table) == 7
    for row in table.itertuples(index=False):
        where, kind = _truth(pg, prefix + EVENTS, int(row.partition), int(row.offset))
        assert row.landed == (f"raw.dead_letters ({kind})" if kind else where)


def test_groups_page_shows_members_and_the_sinks_stored_positions(
    kafka: EphemeralKafka,
    pg: EphemeralPostgres,
    landed: dict[str, object],
    produced: dict[tuple[int, int], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = f"members-{RUN}"
    member = Consumer(
        {
            **kafka.client_config(),
            "group.id": group,
            "client.id": f"reader-{RUN}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        member.subscribe([TOPIC])
        deadline = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.5)
        assigned = {(tp.topic, tp.partition) for tp in member.assignment()}
        assert len(assigned) == 3
        _analyst(pg, kafka, monkeypatch)

        at = open_page(KAFKA_UI, "views/groups.py", group=group)
        members = frame_with(at, "client id", "host", "assigned")
        assert members["client id"].tolist() == [f"reader-{RUN}"]
        shown = {tuple(a.rsplit("[", 1)) for a in members["assigned"].iloc[0].split(", ")}
        assert {(t, int(p.rstrip("]"))) for t, p in shown} == assigned
        assert f"{group} — lag" in " ".join(s.value for s in at.subheader)
        assert all(f"{group} — " in s.value for s in at.subheader)  # ?group= shows only it
    finally:
        member.close()
    # With more groups than a page details, it details one and links the others.
    from confluent_kafka import TopicPartition

    from tests.apptest_support import commit_group_offsets

    for n in range(13):
        commit_group_offsets(kafka.bootstrap, f"many-{RUN}-{n}", [TopicPartition(TOPIC, 0, n)])
    at = open_page(KAFKA_UI, "views/groups.py")
    listed = frame_with(at, "group", "state", "link")
    assert {f"many-{RUN}-{n}" for n in range(13)} <= set(listed.group)
    assert len(at.subheader) == 1 and "groups: details for" in texts(at)
    assert set(listed.link) >= {f"/groups?group=many-{RUN}-{n}" for n in range(13)}
    # The test sink's group: PostgreSQL's stored positions beside Kafka's committed ones.
    prefix = str(landed["prefix"])
    at = open_page(KAFKA_UI, "views/groups.py", group=prefix + "sink")
    positions = frame_with(at, "stored in PostgreSQL", "committed in Kafka")
    stored = dict(
        ((t, p), o)
        for t, p, o in query(
            pg,
            "select topic, partition, next_offset from ops.consumer_offsets "
            "where consumer_group = %s",
            (prefix + "sink",),
        )
    )
    shown_positions = {
        (topic, int(partition)): int(position)
        for topic, partition, position in positions[["topic", "partition", "stored in PostgreSQL"]]
        .dropna()
        .values
    }
    assert shown_positions == stored and stored
    committed = positions["committed in Kafka"].dropna().astype(int)
    assert (positions.loc[committed.index, "stored in PostgreSQL"] >= committed).all()
    assert "ops.consumer_offsets" in texts(at)


def test_deep_links_open_a_message_a_topic_and_fail_in_one_line(
    kafka: EphemeralKafka,
    pg: EphemeralPostgres,
    produced: dict[tuple[int, int], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _analyst(pg, kafka, monkeypatch)
    from streamlit.testing.v1 import AppTest

    def page(name: str, **params: str) -> AppTest:
        return open_page(KAFKA_UI, name, **params)

    at = page(
        "views/messages.py", topic=TOPIC, partition="1", offset="40", mode="offset", limit="1"
    )
    table = frame_with(at, "partition", "offset", "link")
    assert table[["partition", "offset"]].values.tolist() == [[1, 40]]
    assert (
        table.link.iloc[0] == f"/messages?topic={TOPIC}&partition=1&offset=40&mode=offset&limit=1"
    )
    assert metrics(at)["Messages shown"] == "1"
    at = page("views/messages.py", topic=TOPIC, field="device_id = dev-00002", limit="500")
    table = frame_with(at, "partition", "offset")
    assert {(int(p), int(o)) for p, o in table[["partition", "offset"]].values} == {
        c for c, n in produced.items() if n % 7 == 2
    }
    at = page("views/messages.py", topic=TOPIC, field="device_id dev-2")
    assert "is not `field = value`" in texts(at)
    at = page("views/messages.py", topic=TOPIC, mode="timestamp", since="yesterday")
    assert "is not an ISO time" in texts(at)
    at = page("views/topics.py", topic=TOPIC)
    assert frame_with(at, "topic", "link").set_index("topic").loc[TOPIC, "link"] == (
        f"/?topic={TOPIC}"
    )
    assert any(s.value.startswith(TOPIC) for s in at.subheader)
    configs = frame_with(at, "name", "value", "source", "non-default").set_index("name")
    assert configs.loc["retention.ms", "non-default"] == "●"
    assert configs.loc["retention.ms", "source"] == "topic"
    partitions = frame_with(at, "partition", "leader", "replicas", "in sync", "size bytes")
    assert partitions["end offset"].sum() == RECORDS
    for shown in (
        at,
        page("views/groups.py"),
        page("views/dead_letters.py"),
        page("views/brokers.py"),
    ):
        assert "Read-only" in texts(shown)


def test_the_cluster_reports_log_dirs_roles_and_the_quorum(kafka: EphemeralKafka) -> None:
    found = inspector.cluster(kafka.client_config())
    (broker,) = found.brokers
    assert broker.log_dirs and all(os.path.isdir(d) for d in broker.log_dirs.split(","))
    assert "broker" in broker.roles and "controller" in broker.roles
    assert found.quorum


def test_a_live_tail_shows_a_record_produced_after_the_page_opened(
    kafka: EphemeralKafka,
    pg: EphemeralPostgres,
    produced: dict[tuple[int, int], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _analyst(pg, kafka, monkeypatch)

    at = open_page(
        KAFKA_UI, "views/messages.py", topic=TOPIC, partition="0", mode="tail", limit="3"
    )
    assert "Live: re-read every 2 s" in texts(at)
    before = frame_with(at, "partition", "offset").offset.tolist()
    assert len(before) == 3 and before == sorted(before, reverse=True)
    offsets: list[int] = []
    producer = Producer(kafka.client_config())
    producer.produce(
        TOPIC,
        key=b"tail",
        value=b'{"tail": true}',
        partition=0,
        on_delivery=lambda err, msg: offsets.append(msg.offset()),
    )
    assert producer.flush(30) == 0
    time.sleep(2.5)  # a tail's read is cached for 2 s
    at.run()
    table = frame_with(at, "partition", "offset", "key")
    assert table.offset.tolist()[:2] == [offsets[0], before[0]]
    assert table.key.iloc[0] == "tail"


def test_a_read_ends_at_the_partition_end_when_the_last_offset_holds_no_record(
    kafka: EphemeralKafka,
) -> None:
    """A transaction's commit marker takes the last offset: no record is ever fetched
    there, and the read must still end at the end of the partition, complete."""
    name = f"transactional-{RUN}"
    admin = AdminClient(kafka.client_config())
    admin.create_topics([NewTopic(name, 1, 1)])[name].result()
    producer = Producer({**kafka.client_config(), "transactional.id": f"inspector-{RUN}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for n in range(5):
        producer.produce(name, value=json.dumps({"n": n}).encode())
    producer.commit_transaction(30)
    for mode in ("newest", "offset"):
        read = inspector.browse(kafka.client_config(), name, mode=mode, limit=20, budget=20)
        assert read.complete, mode
        assert sorted(m.offset for m in read.messages) == [0, 1, 2, 3, 4]
