"""Shared helpers of the streaming ingestion tests (real Kafka, real PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from confluent_kafka import Producer

from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.consumer import SinkConsumer
from streaming.settings import KafkaSettings
from streaming.topics import ensure_topics

REPO = Path(__file__).resolve().parents[2]
LOADER = "smart_access_loader"
RAW_TABLES = ("access_events", "device_health", "device_registry", "dead_letters")


def event(**changes: object) -> dict[str, object]:
    """A valid v1 access event, with `changes` applied."""
    body: dict[str, object] = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "device_id": "dev-1",
        "household_id": "hh-1",
        "event_ts": datetime.now(UTC).isoformat(),
        "event_type": "open",
        "trigger_source": "app",
    }
    body.update(changes)
    return body


# Rows of this test's topics whose user_id is 'db-says-no' are refused by PostgreSQL.
REFUSE_USER = "kafka_topic not like %s or user_id is distinct from 'db-says-no'"


def add_constraint(
    pg: EphemeralPostgres, table: str, name: str, check: str, params: tuple[Any, ...] = ()
) -> None:
    """A CHECK the validator knows nothing about, for new rows only (NOT VALID)."""
    admin = psycopg2.connect(pg.dsn())
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(
                f"alter table {table} add constraint {name} check ({check}) not valid", params
            )
    finally:
        admin.close()


def reject_marked_user(pg: EphemeralPostgres, prefix: str, label: str) -> str:
    """raw.access_events refuses rows of the topics under `prefix` whose user_id is
    'db-says-no' (a rule the validator knows nothing about); returns the constraint's
    name, for drop_constraint."""
    name = f"{label}_{prefix.strip('.')}"
    add_constraint(
        pg,
        "raw.access_events",
        name,
        "kafka_topic not like %s or user_id is distinct from 'db-says-no'",
        (prefix + "%",),
    )
    return name


def drop_constraint(pg: EphemeralPostgres, table: str, name: str) -> None:
    admin = psycopg2.connect(pg.dsn())
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"alter table {table} drop constraint {name}")
    finally:
        admin.close()


def new_prefix(kafka: EphemeralKafka) -> str:
    """A private copy of the contract topics for one test."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    ensure_topics(kafka.client_config(), prefix=prefix)
    return prefix


def kafka_settings(kafka: EphemeralKafka) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka.bootstrap)


def start_consumer(
    kafka: EphemeralKafka, pg: EphemeralPostgres, prefix: str, **kwargs: Any
) -> tuple[SinkConsumer, threading.Thread]:
    consumer = SinkConsumer(
        kafka_settings(kafka),
        pg.dsn(user=LOADER),
        group=kwargs.pop("group", prefix + "sink"),
        topic_prefix=prefix,
        **kwargs,
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    return consumer, thread


def stop_consumer(consumer: SinkConsumer, thread: threading.Thread) -> None:
    consumer.request_stop()
    thread.join(60)
    assert not thread.is_alive(), "consumer did not stop within 60 s"


def produce(
    kafka: EphemeralKafka,
    prefix: str,
    records: Iterable[tuple[str, bytes | None, bytes | None]],
    tags: Iterable[Any] | None = None,
) -> dict[tuple[str, int, int], Any]:
    """Send (topic, key, value) records; returns coordinates -> tag of every acknowledged one."""
    producer = Producer(
        {**kafka.client_config(), "enable.idempotence": True, "acks": "all", "linger.ms": 20}
    )
    landed: dict[tuple[str, int, int], Any] = {}
    tag_iter = iter(tags) if tags is not None else None

    def done_for(tag: Any) -> Callable[[Any, Any], None]:
        def done(err: Any, msg: Any) -> None:
            assert err is None, err
            landed[(msg.topic(), msg.partition(), msg.offset())] = tag

        return done

    for topic, key, value in records:
        tag = next(tag_iter) if tag_iter is not None else None
        while True:
            try:
                producer.produce(prefix + topic, key=key, value=value, on_delivery=done_for(tag))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0
    return landed


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def query(pg: EphemeralPostgres, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(pg.dsn())
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def counts(pg: EphemeralPostgres, prefix: str) -> dict[str, int]:
    out = {}
    for table in RAW_TABLES:
        ((n,),) = query(
            pg, f"select count(*) from raw.{table} where kafka_topic like %s", (prefix + "%",)
        )
        out[table] = n
    return out


def landed_total(pg: EphemeralPostgres, prefix: str) -> int:
    return sum(counts(pg, prefix).values())


def coordinates(pg: EphemeralPostgres, prefix: str, table: str) -> list[tuple[str, int, int]]:
    return [
        (t, p, o)
        for t, p, o in query(
            pg,
            f"select kafka_topic, kafka_partition, kafka_offset from raw.{table} "
            "where kafka_topic like %s",
            (prefix + "%",),
        )
    ]


def assert_exactly_once(
    pg: EphemeralPostgres, prefix: str, produced: dict[tuple[str, int, int], bool]
) -> None:
    """raw = the produced valid records and dead letters = the invalid ones, each once."""
    rows: list[tuple[str, int, int]] = []
    for table in ("access_events", "device_health", "device_registry"):
        rows += coordinates(pg, prefix, table)
    dead = coordinates(pg, prefix, "dead_letters")
    assert len(rows) == len(set(rows)), "duplicate coordinates in raw"
    valid = {c for c, ok in produced.items() if ok}
    invalid = {c for c, ok in produced.items() if not ok}
    assert set(rows) == valid, (
        f"{len(valid - set(rows))} valid records missing, {len(set(rows) - valid)} unexpected"
    )
    assert set(dead) == invalid and len(dead) == len(invalid)


def consumer_process(
    kafka: EphemeralKafka, pg: EphemeralPostgres, prefix: str, *args: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **pg.env(user=LOADER),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "PYTHONPATH": str(REPO),
    }
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streaming.consumer",
            "--topic-prefix",
            prefix,
            "--group",
            prefix + "sink",
            *args,
        ],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def job_metrics(folder: Path, job: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of a one-shot job's metrics file, parsed as Prometheus would."""
    from prometheus_client.parser import text_string_to_metric_families

    text = (folder / f"smart_access_{job}.prom").read_text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
