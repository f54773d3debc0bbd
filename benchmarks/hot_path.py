"""The consumer's hot path, one step at a time, on the ingest benchmark's backlog.

The consumer overlaps its steps (a writer thread lands one batch while the next is
read and decoded), so its drain time is not their sum. Here each step runs alone,
single-threaded, on the same preloaded topics, with the consumer's own code:

    consume   Consumer.consume (10 000 a call) with the sink's consumer settings,
              the partitions assigned from their start, until each is at its end
    decode    Validator.validate on each value (JSON decode, contract checks)
    encode    absorb_record (key checks, validate, the COPY line, the batch's
              bookkeeping) minus `decode`
    copy      PostgresSink._land: COPY into raw, inside the write's transaction
    commit    the rest of PostgresSink.write: positions, the batch ledger, COMMIT

into a second throw-away PostgreSQL (the benchmark's own already holds the rows).
Each step is reported in microseconds per record, beside the drain's measured cost.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError

from stack.ephemeral import EphemeralPostgres
from streaming.clients import consumer_config
from streaming.consumer import DEFAULT_BATCH_SIZE, absorb_record
from streaming.contracts import Validator
from streaming.settings import KafkaSettings
from streaming.sink import Batch, PostgresSink, Record
from streaming.topics import DATA_TOPICS

logger = logging.getLogger("benchmarks.hot_path")
STEPS = ("consume", "decode", "encode", "copy", "commit")


class _TimedSink(PostgresSink):
    """The sink with the time spent in COPY (its _land) counted apart."""

    copy_seconds = 0.0

    def _land(self, cur: Any, table: str, *args: Any, **kwargs: Any) -> int:
        started = time.perf_counter()
        try:
            return super()._land(cur, table, *args, **kwargs)
        finally:
            self.copy_seconds += time.perf_counter() - started


def _consume(bootstrap: str, expected: int) -> tuple[list[Any], float]:
    """Every record of the data topics, read from the start; the seconds spent in
    consume() (the partitions are assigned directly: no group join is timed)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    settings = KafkaSettings(bootstrap_servers=bootstrap)
    config = consumer_config(
        settings, "smart-access-hot-path-profile", "hot-path-profile",
        **{"enable.partition.eof": True},
    )  # fmt: skip
    consumer = Consumer(config)
    metadata = consumer.list_topics(timeout=30)
    partitions = [
        TopicPartition(topic, partition, OFFSET_BEGINNING)
        for topic in DATA_TOPICS
        for partition in metadata.topics[topic].partitions
    ]
    consumer.assign(partitions)
    messages: list[Any] = []
    ended: set[tuple[Any, Any]] = set()
    seconds = 0.0
    deadline = time.monotonic() + 600
    try:
        while len(ended) < len(partitions) and time.monotonic() < deadline:
            started = time.perf_counter()
            got = consumer.consume(num_messages=10_000, timeout=1.0)
            seconds += time.perf_counter() - started
            for message in got:
                error = message.error()
                if error is None:
                    messages.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    ended.add((message.topic(), message.partition()))
    finally:
        consumer.close()
    if len(messages) < expected:
        raise RuntimeError(f"the profile read {len(messages)} of {expected} records")
    return messages, seconds


def profile(bootstrap: str, expected: int) -> dict[str, Any]:
    """Per-step seconds and microseconds per record over `expected` records."""
    messages, consume_s = _consume(bootstrap, expected)
    records = [
        Record(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value(), 0)
        for m in messages
    ]
    del messages
    validator = Validator()
    now = datetime.now(UTC)
    started = time.perf_counter()
    for record in records:
        validator.validate(record.topic, record.value, now)
    decode_s = time.perf_counter() - started

    batches: list[Batch] = []
    started = time.perf_counter()
    for first in range(0, len(records), DEFAULT_BATCH_SIZE):
        batch = Batch()
        batch.started_at, batch.started_monotonic = now, time.monotonic()
        for record in records[first : first + DEFAULT_BATCH_SIZE]:
            absorb_record(batch, validator.validate, record, record.topic, now)
        batches.append(batch)
    absorb_s = time.perf_counter() - started

    pg = EphemeralPostgres.create()
    try:
        sink = _TimedSink(pg.dsn(user="smart_access_loader"), "hot-path-profile", "profile")
        started = time.perf_counter()
        for batch in batches:
            sink.write(batch)
        write_s = time.perf_counter() - started
        sink.close()
    finally:
        pg.destroy()
    seconds = {
        "consume": consume_s,
        "decode": decode_s,
        "encode": max(0.0, absorb_s - decode_s),
        "copy": sink.copy_seconds,
        "commit": max(0.0, write_s - sink.copy_seconds),
    }
    count = max(1, len(records))
    return {
        "records": len(records),
        "batches": len(batches),
        "seconds": {step: round(value, 3) for step, value in seconds.items()},
        "us_per_record": {step: round(value / count * 1e6, 2) for step, value in seconds.items()},
        "serial_us_per_record": round(sum(seconds.values()) / count * 1e6, 2),
    }


def log_table(result: dict[str, Any], drain_us_per_record: float) -> None:
    logger.info("hot path, one step at a time (%d records):", result["records"])
    for step in STEPS:
        logger.info(
            "  %-8s %8.2f us/record  %7.2fs", step, result["us_per_record"][step],
            result["seconds"][step],
        )  # fmt: skip
    logger.info(
        "  serial sum %.2f us/record; the consumer's drain (steps overlapped): %.2f us/record",
        result["serial_us_per_record"],
        drain_us_per_record,
    )
