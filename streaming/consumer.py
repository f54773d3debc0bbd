"""`python -m streaming.consumer`: the exactly-once micro-batch sink into PostgreSQL.

Reads the three data topics in group `smart-access-sink`, validates every record,
and lands each micro-batch (size or time, whichever comes first) in ONE PostgreSQL
transaction together with its next positions (`ops.consumer_offsets`). Positions
in PostgreSQL are the truth: on assignment, and after any failed batch, the
consumer seeks to them. Kafka's committed offsets follow afterwards, for lag
monitoring only.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Final

import psycopg2
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streaming import logs
from streaming.cli import ArgumentParser, iso_timestamp
from streaming.clients import consumer_config, producer_config, refusal
from streaming.contracts import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MIN_TIMESTAMP,
    AccessEventV0,
    DeviceRemoval,
    HealthReportV0,
    Invalid,
    Validator,
)
from streaming.metrics import ConsumerMetrics
from streaming.settings import KafkaSettings, PostgresSettings, settings_error
from streaming.sink import (
    TABLES,
    Batch,
    BatchResult,
    DeadLetter,
    Halt,
    PostgresSink,
    Record,
    Stored,
    kafka_datetime,
)
from streaming.topics import CONSUMER_GROUP, DATA_TOPICS, DEVICES, DLQ, topic_ids

__all__ = [
    "DeadLetterQueue",
    "SinkConsumer",
    "Verdict",
    "absorb_record",
    "caused_by_record",
    "contract_topic",
    "dlq_copy",
    "main",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 20_000
DEFAULT_BATCH_TIMEOUT = 0.25
# the longest one consume() call waits (seconds): a batch's size, time and caught-up
# checks run at least this often
LOOK_AGAIN = 0.02
_PG_DOWN = (psycopg2.OperationalError, psycopg2.InterfaceError)
_AUTH_ERRORS = ("password authentication failed", "does not exist", "no pg_hba.conf entry")


class DeadLetterQueueUnavailable(RuntimeError):
    """The DLQ topic did not acknowledge the batch's dead letters in time."""


# What a DLQ copy's key and value may take together. The producer refuses messages
# over its message.max.bytes (1 000 000) and the broker over the topic's
# max.message.bytes (1 048 588); headers and record overhead need the rest.
DLQ_MAX_COPY_BYTES: Final = 900_000


def dlq_copy(
    letter: DeadLetter, limit: int = DLQ_MAX_COPY_BYTES
) -> tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]:
    """Key, value and headers of a dead letter's DLQ copy, bounded to `limit` bytes of
    key and value; a truncated copy says so in `payload_truncated` (the original size),
    and `raw.dead_letters` keeps the full bytes."""
    rec = letter.record
    key, value = rec.key, rec.value
    headers: list[tuple[str, str | bytes | None]] = [
        ("error_kind", letter.kind.encode()),
        ("error_detail", letter.detail.encode("utf-8", "replace")),
        ("source_topic", rec.topic.encode()),
        ("source_partition", str(rec.partition).encode()),
        ("source_offset", str(rec.offset).encode()),
        ("source_timestamp_ms", str(rec.timestamp_ms).encode()),
        ("consumer_group", CONSUMER_GROUP.encode()),
    ]
    if key is not None and len(key) > limit // 8:
        headers.append(("key_truncated", str(len(key)).encode()))
        key = key[: limit // 8]
    room = limit - (len(key) if key is not None else 0)
    if value is not None and len(value) > room:
        headers.append(("payload_truncated", str(len(value)).encode()))
        value = value[:room]
    return key, value, headers


class DeadLetterQueue:
    """Copies dead letters to `smart-access.dlq` with the reason in headers.

    Called inside the batch transaction, before COMMIT: a failure rolls the batch
    back. A crash between the flush and the COMMIT can repeat a DLQ message, so the
    topic is at-least-once; `raw.dead_letters` is the exactly-once record. A copy
    never exceeds what the topic takes: larger payloads are truncated (see `dlq_copy`).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        client_id: str,
        topic: str = DLQ,
        timeout: float = 15.0,
        max_copy_bytes: int = DLQ_MAX_COPY_BYTES,
    ) -> None:
        self.topic = topic
        self.producer = Producer(producer_config(kafka, f"{client_id}-dlq", **{"linger.ms": 5}))
        self.timeout = timeout
        self.max_copy_bytes = max_copy_bytes
        self._failures: list[tuple[DeadLetter, KafkaError]] = []

    def _produce(self, letter: DeadLetter, limit: int) -> None:
        key, value, headers = dlq_copy(letter, limit)

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                self._failures.append((letter, err))

        while True:
            try:
                self.producer.produce(
                    self.topic, value=value, key=key, headers=headers, on_delivery=delivered
                )
                return
            except BufferError:
                self.producer.poll(0.1)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    if limit <= 1024:
                        raise DeadLetterQueueUnavailable(
                            f"{self.topic} refuses even a 1 KiB copy: {err.str()}"
                        ) from exc
                    limit = 1024  # headers are bounded: a 1 KiB body always fits
                    key, value, headers = dlq_copy(letter, limit)
                    continue
                raise DeadLetterQueueUnavailable(f"{self.topic}: {exc}") from exc

    def __call__(self, letters: Sequence[DeadLetter]) -> None:
        self._failures = []
        for letter in letters:
            self._produce(letter, self.max_copy_bytes)
        remaining = self.producer.flush(self.timeout)
        # the broker may take less than the client (a smaller max.message.bytes on the
        # topic): send those copies again with a 1 KiB body
        oversized = [
            letter
            for letter, err in self._failures
            if err.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE)
        ]
        if oversized and not remaining and len(oversized) == len(self._failures):
            self._failures = []
            for letter in oversized:
                self._produce(letter, 1024)
            remaining = self.producer.flush(self.timeout)
        if remaining or self._failures:
            raise DeadLetterQueueUnavailable(
                f"{remaining} dead letters not acknowledged by {self.topic}, "
                f"{len(self._failures)} failed"
                + (f" ({self._failures[0][1].str()})" if self._failures else "")
            )

    def close(self) -> None:
        self.producer.flush(5)
        del self.producer


class SinkConsumer:
    def __init__(
        self,
        kafka: KafkaSettings,
        postgres_dsn: str,
        *,
        group: str = CONSUMER_GROUP,
        topics: Sequence[str] = DATA_TOPICS,
        topic_prefix: str = "",
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_timeout: float = DEFAULT_BATCH_TIMEOUT,
        max_message_bytes: int = DEFAULT_MAX_BYTES,
        max_skew: timedelta = timedelta(minutes=5),
        min_timestamp: datetime = DEFAULT_MIN_TIMESTAMP,
        max_backoff: float = 30.0,
        consumer_overrides: dict[str, Any] | None = None,
        synchronous_commit: bool = False,
        metrics_port: int | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.client_id = f"{socket.gethostname()}-{os.getpid()}"
        self.kafka = kafka
        # static membership: a restart within the session timeout keeps the partitions
        membership = {"group.instance.id": instance_id} if instance_id else {}
        self.group = group
        self.prefix = topic_prefix
        self.topics = [topic_prefix + t for t in topics]
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.max_backoff = max_backoff
        self.validator = Validator(
            max_bytes=max_message_bytes, max_skew=max_skew, min_timestamp=min_timestamp
        )
        self.sink = PostgresSink(postgres_dsn, group, self.client_id, synchronous_commit)
        self.dlq = DeadLetterQueue(kafka, self.client_id, topic=topic_prefix + DLQ)
        config = consumer_config(
            kafka,
            group,
            self.client_id,
            error_cb=self._kafka_error,
            # a stored position outside the log is reported, never silently reset:
            # the log was replaced (topic recreated, broker data lost)
            **{"auto.offset.reset": "error"},
            # a partition read to its end says so: a caught-up batch need not wait
            **{"enable.partition.eof": True},
            **membership,
            **(consumer_overrides or {}),
        )
        # the protocol decides how the rebalance callbacks change the assignment
        self.cooperative = "cooperative" in str(config.get("partition.assignment.strategy"))
        self.consumer = Consumer(config)
        self.admin = AdminClient({**kafka.client_config(), "log_level": 3})
        self.group_flag = "" if group == CONSUMER_GROUP else f" --group {group}"
        self.prefix_flag = f" --topic-prefix {topic_prefix}" if topic_prefix else ""
        # per partition: its log epoch, the next offset we expect, and whether it halted
        self.epochs: dict[tuple[str, int], int] = {}
        self.expected: dict[tuple[str, int], int] = {}
        self.halted: set[tuple[str, int]] = set()
        self.metrics = ConsumerMetrics(group)
        if metrics_port:
            self.metrics.serve(metrics_port)
        self.batch: Batch | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-writer")
        self._inflight: tuple[Batch, Future[BatchResult]] | None = None
        self.batch_deadline = 0.0
        self.assignment: set[tuple[str, int]] = set()
        # assigned partitions read to their end since their last record
        self.drained: set[tuple[str, int]] = set()
        self.need_rewind = False
        self.stopping = False
        self.backoff = 0.5
        self.totals = {"rows": 0, "dead": 0, "batches": 0, "skipped": 0}
        self._last_kafka_error = 0.0
        self._last_report = time.monotonic()
        self.refused: str | None = None

    # --- signals and errors --------------------------------------------------
    def request_stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        if not self.stopping:
            logger.info("%s received: finishing the current batch", signal.Signals(signum).name)
        self.stopping = True

    def _kafka_error(self, err: KafkaError) -> None:
        refused = refusal(err, self.kafka.credential_variable)
        if refused:
            # a wrong password or CA does not heal by retrying: say so once and stop
            if not self.stopping:
                logger.error("%s", refused)
                self.refused = refused
            self.stopping = True
            return
        if err.fatal():
            logger.error("fatal Kafka error: %s", err)
            self.stopping = True
            return
        self.metrics.errors.labels(system="kafka", kind=err.name()).inc()
        now = time.monotonic()
        if now - self._last_kafka_error > 10:
            logger.warning("Kafka: %s (the client keeps reconnecting)", err.str())
            self._last_kafka_error = now

    # --- rebalance callbacks -------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle(retry=False)  # the sink's connection is free for the position lookup
        wanted = [(p.topic, p.partition) for p in partitions]
        positions = self._retry_pg("reading stored positions", self.sink.stored_state, wanted)
        if positions is None:  # stopping while PostgreSQL is down: read nothing
            self._take(consumer, partitions)
            consumer.pause(partitions)
            return
        ids = self._topic_ids(sorted({p.topic for p in partitions}))
        self.sink.topic_ids.update(ids)
        halted = []
        for p in partitions:
            key = (p.topic, p.partition)
            stored = positions.get(key)
            self.halted.discard(key)
            if stored is None:
                p.offset = OFFSET_BEGINNING
                self.epochs[key] = 0
                self.expected.pop(key, None)
                continue
            p.offset = stored.next_offset
            self.epochs[key] = stored.log_epoch
            self.expected[key] = stored.next_offset
            halt = self._check_log(p.topic, p.partition, stored, ids.get(p.topic))
            if halt is not None:
                halted.append(TopicPartition(p.topic, p.partition))
                self._halt(halt)
            else:
                self.metrics.halted.labels(topic=p.topic, partition=str(p.partition)).set(0)
        self._take(consumer, partitions)
        if halted:
            consumer.pause(halted)
        self.assignment |= set(wanted)
        self.drained -= set(wanted)  # read to its end only once librdkafka says so
        if not partitions:  # a cooperative rebalance that gave this member nothing new
            return
        logger.info(
            "assigned %s",
            ", ".join(
                f"{p.topic}[{p.partition}]@{'start' if p.offset < 0 else p.offset}"
                for p in partitions
            ),
        )

    def _take(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start fetching `partitions` at the offsets set on them: under the
        cooperative protocol they add to the assignment, under the eager one they are
        the whole of it."""
        if self.cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    # --- offset reuse: the stored position must belong to the log Kafka has -----------
    def _topic_ids(self, topics: list[str]) -> dict[str, str]:
        return topic_ids(self.admin, topics)

    def _check_log(
        self, topic: str, partition: int, stored: Stored, topic_id: str | None
    ) -> Halt | None:
        low: int | None
        high: int | None
        try:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=5
            )
        except KafkaException as exc:
            logger.debug("watermarks of %s[%s] unavailable: %s", topic, partition, exc)
            low = high = None
        reason = None
        if stored.topic_id and topic_id and stored.topic_id != topic_id:
            reason = "topic_recreated"
        elif high is not None and stored.next_offset > high:
            reason = "offset_beyond_log_end"
        elif low is not None and stored.next_offset < low:
            reason = "log_start_beyond_position"
        if reason is None:
            return None
        return Halt(
            topic,
            partition,
            reason,
            stored.next_offset,
            low,
            high,
            stored.topic_id,
            topic_id,
            stored.log_epoch,
        )

    def _halt(self, halt: Halt) -> None:
        """Stop one partition whose log was replaced: one error line and an ops row."""
        self.halted.add((halt.topic, halt.partition))
        self.metrics.halted.labels(topic=halt.topic, partition=str(halt.partition)).set(1)
        what = {
            "topic_recreated": f"the topic's id changed ({halt.stored_topic_id} -> "
            f"{halt.actual_topic_id}): it was deleted and recreated",
            "offset_beyond_log_end": f"it is beyond the log end {halt.log_end}: the topic was "
            "recreated or its log lost",
            "log_start_beyond_position": f"the log now starts at {halt.log_start}: records "
            "before it were deleted (retention) before they landed",
        }[halt.reason]
        topic = halt.topic[len(self.prefix) :]
        logger.error(
            "%s[%s] stopped: stored position %s (log epoch %s) does not belong to this log; "
            "%s. The other partitions go on. To accept the new log: python -m streaming.replay "
            "--accept-new-log --topic %s%s%s",
            halt.topic,
            halt.partition,
            halt.stored_offset,
            halt.log_epoch,
            what,
            topic,
            self.prefix_flag,
            self.group_flag,
        )
        self._retry_pg("recording the halt", self.sink.record_halt, halt)

    def _halt_running(self, topic: str, partition: int, why: str) -> None:
        """A partition whose fetch position left the log while assigned."""
        key = (topic, partition)
        if key in self.halted:
            return
        try:
            self.consumer.pause([TopicPartition(topic, partition)])
        except KafkaException as exc:
            logger.debug("pause failed: %s", exc)
        self.halted.add(key)
        stored = self._retry_pg("reading stored positions", self.sink.stored_state, [key])
        if not stored or key not in stored:
            return
        s = stored[key]
        halt = self._check_log(topic, partition, s, self._topic_ids([topic]).get(topic))
        if halt is None:  # the offsets alone do not show it: report what Kafka said
            halt = Halt(
                topic,
                partition,
                "offset_beyond_log_end",
                s.next_offset,
                None,
                None,
                s.topic_id,
                None,
                s.log_epoch,
            )
        logger.debug("%s[%s]: %s", topic, partition, why)
        self._halt(halt)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        # the partitions are still ours until this callback returns: land what we have
        if not self._flush(retry=False):
            self.batch = None
        self.assignment -= gone
        self.halted -= gone
        self.drained -= gone
        self.need_rewind = self.need_rewind and bool(self.assignment)
        logger.info("revoked %d partitions", len(gone))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        self._settle(retry=False)  # already written: harmless, the database dedupes
        if self.batch is not None:
            # someone else may own them already: never write their records
            self.batch = self.batch.drop_partitions(gone)
        self.assignment -= gone
        self.halted -= gone
        self.drained -= gone
        logger.warning("lost %d partitions (session expired); their records are dropped", len(gone))

    # --- PostgreSQL retries --------------------------------------------------
    def _retry_pg(self, what: str, func: Any, *args: Any) -> Any:
        delay = 0.5
        while True:
            try:
                return func(*args)
            except _PG_DOWN as exc:
                self._raise_if_config_error(exc)
                if self.stopping:
                    return None
                logger.warning(
                    "PostgreSQL unavailable while %s (%s); retrying in %.1fs",
                    what,
                    _one_line(exc),
                    delay,
                )
                end = time.monotonic() + delay  # inside a rebalance callback: no polling
                while not self.stopping and time.monotonic() < end:
                    time.sleep(0.1)
                delay = min(delay * 2, self.max_backoff)

    @staticmethod
    def _raise_if_config_error(exc: Exception) -> None:
        text = str(exc)
        if any(marker in text for marker in _AUTH_ERRORS):
            raise SystemExit(
                f"error: PostgreSQL refused the consumer: {_one_line(exc)}; "
                "check PGUSER/PGPASSWORD/PGDATABASE"
            )

    def _sleep_polling(self, seconds: float) -> None:
        """Wait without consuming (callers paused or will rewind); keeps group membership."""
        end = time.monotonic() + seconds
        while not self.stopping:
            left = end - time.monotonic()
            if left <= 0:  # never pass a negative timeout: librdkafka reads it as "forever"
                break
            self.consumer.consume(num_messages=1, timeout=min(0.2, left))

    # --- the loop -----------------------------------------------------------
    def run(self) -> int:
        try:  # a wrong password or database is worth failing fast for; down is not
            self.sink.connect()
        except _PG_DOWN as exc:
            self._raise_if_config_error(exc)
            logger.warning("PostgreSQL not reachable yet (%s); will retry", _one_line(exc))
        self.consumer.subscribe(
            self.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        logger.info(
            "consuming %s as group %s (batch %d records / %.2fs)",
            ", ".join(self.topics),
            self.group,
            self.batch_size,
            self.batch_timeout,
        )
        try:
            while not self.stopping:
                if self.need_rewind:
                    self._rewind()
                    continue
                self._poll_once()
                self._report()
            self._flush(retry=False)
        finally:
            self.batch = None
            try:
                self._settle(retry=False)
                self.consumer.close()
            finally:
                self._writer.shutdown(wait=True)
                self.sink.close()
                self.dlq.close()
                self.metrics.close()
        logger.info(
            "stopped: %d rows, %d dead letters in %d batches",
            self.totals["rows"],
            self.totals["dead"],
            self.totals["batches"],
        )
        if self.refused:
            raise SystemExit(f"error: {self.refused}")
        return 0

    def _poll_once(self) -> None:
        if self._inflight is not None and self._inflight[1].done():
            self._settle(retry=True)
            if self.need_rewind:
                return
        called = time.monotonic()
        if self.batch is None or not self.batch.size:
            # the first record of a batch may arrive right away: its wait starts now
            self.batch_deadline = called + self.batch_timeout
        # consume() waits its whole timeout unless it fills `want`: look again soon, so
        # a partition's end (or the writer coming free) closes the batch without delay
        timeout = min(max(0.0, self.batch_deadline - called), LOOK_AGAIN)
        want = self.batch_size - (self.batch.size if self.batch else 0)
        messages = self.consumer.consume(num_messages=max(1, min(want, 10_000)), timeout=timeout)
        if messages:
            self._absorb(messages, called)
        batch = self.batch
        if batch is not None and batch.size:
            # a batch closes on size, on time, or when every assigned partition is read
            # to its end and the writer is free (no waiting to fill once caught up)
            writer_free = self._inflight is None or self._inflight[1].done()
            if (
                batch.size >= self.batch_size
                or time.monotonic() >= self.batch_deadline
                or (writer_free and self._caught_up())
            ):
                self._submit(retry=True)

    def _caught_up(self) -> bool:
        """Every assigned partition is read to its end (a halted one counts: it is
        paused and sends nothing)."""
        return self.assignment <= self.drained | self.halted

    def _absorb(self, messages: list[Any], called: float) -> None:
        now = datetime.now(UTC)
        validate = self.validator.validate
        cut = len(self.prefix)
        if self.batch is None:
            self.batch = Batch()
        batch = self.batch
        if not batch.size:
            batch.started_at = now - timedelta(seconds=time.monotonic() - called)
            batch.started_monotonic = called
        epochs, expected, halted = self.epochs, self.expected, self.halted
        drained = self.drained
        consumed: dict[str, int] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    drained.add((msg.topic(), msg.partition()))
                elif err.code() == KafkaError._AUTO_OFFSET_RESET and msg.topic():
                    self._halt_running(msg.topic(), msg.partition(), err.str())
                else:
                    self._kafka_error(err)
                continue
            topic = msg.topic()
            key = (topic, msg.partition())
            if drained:
                drained.discard(key)
            offset = msg.offset()
            if halted and key in halted:
                continue
            if offset < expected.get(key, 0):  # the log went back: offsets are being reused
                self._halt_running(topic, key[1], f"offset {offset} after {expected[key]}")
                continue
            expected[key] = offset + 1
            raw = Record(
                topic,
                key[1],
                offset,
                msg.timestamp()[1],
                msg.key(),
                msg.value(),
                epochs.get(key, 0),
            )
            absorb_record(batch, validate, raw, topic[cut:], now)
            consumed[topic] = consumed.get(topic, 0) + 1
        for topic, n in consumed.items():
            self.metrics.consumed.labels(topic=topic[cut:]).inc(n)

    def _lag(self, batch: Batch) -> int | None:
        total = 0
        try:
            for (topic, partition), next_offset in batch.next_offsets.items():
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
                if high >= 0:
                    total += max(0, high - next_offset)
                    self.metrics.lag.labels(topic=topic, partition=str(partition)).set(
                        max(0, high - next_offset)
                    )
        except KafkaException:
            return None
        return total

    def _submit(self, retry: bool) -> None:
        """Hand the current batch to the writer thread once the previous one is settled.

        One batch is written while the next is decoded: PostgreSQL's COPY and the
        consumer's Python work overlap instead of taking turns.
        """
        if not self._settle(retry):
            return
        batch = self.batch
        if batch is None or not batch.size:
            return
        batch.consumer_lag = self._lag(batch)
        self.batch = None
        self._inflight = (batch, self._writer.submit(self._write_quarantining, batch))

    # --- landing, with quarantine of the records that make a batch fail --------------
    def _write_quarantining(self, batch: Batch) -> BatchResult:
        """Land the batch; if it fails twice for a reason its records explain, bisect it
        into smaller transactions until the offending records are isolated, and
        dead-letter those. Infrastructure errors propagate (the caller pauses)."""
        for attempt in (1, 2):
            try:
                return self.sink.write(batch, self.dlq)
            except Exception as exc:
                if not caused_by_record(exc):
                    raise
                logger.warning(
                    "batch of %d records failed (%s: %s)%s",
                    batch.size,
                    type(exc).__name__,
                    _one_line(exc),
                    "; retrying once" if attempt == 1 else "; isolating the records that cause it",
                )
                failure = exc
        return self._bisect(batch, failure)

    def _bisect(self, batch: Batch, failure: Exception) -> BatchResult:
        if batch.size == 1:
            return self._quarantine(batch, failure)
        results = []
        for half in batch.split():
            try:
                results.append(self.sink.write(half, self.dlq))
            except Exception as exc:
                if not caused_by_record(exc):
                    raise
                results.append(self._bisect(half, exc))
        return results[0] + results[1]

    def _quarantine(self, batch: Batch, failure: Exception) -> BatchResult:
        """Dead-letter the one record whose landing fails, with what failed."""
        ((raw, topic, letter),) = batch.records_in_order()
        detail = f"{type(failure).__name__}: {_one_line(failure)}"
        if isinstance(failure, psycopg2.Error) and failure.pgcode:
            detail = f"{failure.pgcode}: {_one_line(failure)}"
        kind = "db_rejected" if isinstance(failure, psycopg2.Error) else "sink_error"
        if letter is not None:  # already a dead letter: its DLQ copy or row failed
            kind, detail = letter.kind, f"{letter.detail} (then {detail})"
        logger.error(
            "%s[%s]@%s quarantined as %s: %s", raw.topic, raw.partition, raw.offset, kind, detail
        )
        single = Batch(started_at=batch.started_at, started_monotonic=batch.started_monotonic)
        single.add_invalid(raw, topic, Invalid(kind, detail))
        try:
            return self.sink.write(single, self.dlq)
        except Exception as exc:
            if not caused_by_record(exc):
                raise
            # the DLQ copy itself is what fails: keep the exactly-once record in raw
            logger.error(
                "%s[%s]@%s: DLQ copy failed (%s); stored in raw.dead_letters only",
                raw.topic,
                raw.partition,
                raw.offset,
                _one_line(exc),
            )
            return self.sink.write(single, None)

    def _settle(self, retry: bool) -> bool:
        """Wait for the batch being written; False if it failed (positions are rewound
        and the batch being built, which follows it, is dropped)."""
        if self._inflight is None:
            return True
        batch, future = self._inflight
        self._inflight = None
        try:
            result = future.result()
        except Exception as exc:
            if isinstance(exc, _PG_DOWN):
                self._raise_if_config_error(exc)
            self.batch = None
            self.need_rewind = True
            self._pause()
            system = "postgres" if isinstance(exc, psycopg2.Error) else "kafka"
            self.metrics.errors.labels(system=system, kind=type(exc).__name__).inc()
            if isinstance(exc, _PG_DOWN):
                what = "PostgreSQL"
            elif isinstance(exc, DeadLetterQueueUnavailable | KafkaException):
                what = "the DLQ topic"
            else:  # privileges, a missing table: the database is not as migrations left it
                what = f"PostgreSQL refused the batch ({type(exc).__name__}), so it is"
            logger.warning(
                "batch of %d records not landed: %s unavailable (%s); positions not advanced, "
                "consumption paused, retrying in %.1fs",
                batch.size,
                what,
                _one_line(exc),
                self.backoff,
            )
            if retry:
                self._sleep_polling(self.backoff)
                self.backoff = min(self.backoff * 2, self.max_backoff)
            return False
        self.backoff = 0.5
        self.metrics.record_batch(
            result.landed_by_topic,
            result.dead_by_kind,
            batch.size,
            result.seconds,
            batch.kafka_timestamps,
            batch.next_offsets,
        )
        self.totals["rows"] += result.rows
        self.totals["dead"] += result.dead_letters
        self.totals["skipped"] += result.skipped_existing
        self.totals["batches"] += 1
        logger.debug(
            "batch landed: %d rows, %d dead letters, %d already present, %.1f ms",
            result.rows,
            result.dead_letters,
            result.skipped_existing,
            result.seconds * 1000,
        )
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)  # lag monitoring only
        except KafkaException as exc:
            logger.debug("Kafka offset commit skipped: %s", exc)
        return True

    def _flush(self, retry: bool) -> bool:
        """Write the current batch and wait for it (and for the one before it)."""
        self._submit(retry)
        return self._settle(retry) and not self.need_rewind

    def _pause(self) -> None:
        parts = [TopicPartition(t, p) for t, p in self.assignment]
        if parts:
            try:
                self.consumer.pause(parts)
            except KafkaException as exc:
                logger.debug("pause failed: %s", exc)

    def _rewind(self) -> None:
        """Seek every assigned partition back to its stored position, then resume."""
        try:
            positions = self.sink.stored_positions(sorted(self.assignment))
        except _PG_DOWN as exc:
            self._raise_if_config_error(exc)
            logger.warning(
                "PostgreSQL still unavailable (%s); retrying in %.1fs",
                _one_line(exc),
                self.backoff,
            )
            self._sleep_polling(self.backoff)
            self.backoff = min(self.backoff * 2, self.max_backoff)
            return
        parts = [
            TopicPartition(t, p, positions.get((t, p), OFFSET_BEGINNING))
            for t, p in sorted(self.assignment)
        ]
        self.drained.clear()  # the positions move back: the ends are ahead again
        for part in parts:
            if part.offset >= 0:
                self.expected[(part.topic, part.partition)] = part.offset
            else:
                self.expected.pop((part.topic, part.partition), None)
        try:
            if parts:
                # re-assigning sets every fetch position at once, whatever state the
                # fetcher is in (a seek right after resume can race with it)
                self.consumer.resume(parts)
                if self.cooperative:
                    # the same reset without leaving the group's cooperative protocol
                    self.consumer.incremental_unassign(parts)
                    self.consumer.incremental_assign(parts)
                else:
                    self.consumer.assign(parts)
                halted = [TopicPartition(t, p) for t, p in sorted(self.halted)]
                if halted:
                    self.consumer.pause(halted)
        except KafkaException as exc:
            logger.warning("seek to stored positions failed (%s); retrying", exc)
            self._sleep_polling(0.5)
            return
        self.need_rewind = False
        logger.info("PostgreSQL is back: resumed %d partitions at stored positions", len(parts))

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._last_report >= 30:
            logger.info(
                "landed %d rows, %d dead letters, %d batches so far",
                self.totals["rows"],
                self.totals["dead"],
                self.totals["batches"],
            )
            self._last_report = now


def absorb_record(
    batch: Batch,
    validate: Callable[[str, bytes | None, datetime], Any],
    raw: Record,
    topic: str,
    now: datetime,
) -> None:
    """Add one consumed record to the batch, valid or dead-lettered; never raises for
    anything the record holds (an unforeseen error dead-letters it as `unprocessable`)."""
    try:
        key = raw.key
        try:
            key_text = None if key is None else key.decode()
        except UnicodeDecodeError:
            batch.add_invalid(raw, topic, Invalid("invalid_key", "message key is not UTF-8"))
            return
        if key_text is not None and "\x00" in key_text:
            batch.add_invalid(raw, topic, Invalid("invalid_key", "message key contains U+0000"))
            return
        if raw.value is None and topic == DEVICES:  # a tombstone: the device is removed
            if not key_text or len(key_text) > 128:
                batch.add_invalid(
                    raw, topic, Invalid("invalid_key", "a registry tombstone needs a device_id key")
                )
                return
            removed_at = kafka_datetime(raw.timestamp_ms) or now
            batch.add_valid(DeviceRemoval(key_text, removed_at), raw, topic, key_text)
            return
        result = validate(topic, raw.value, now)
        if type(result) is Invalid:
            batch.add_invalid(raw, topic, result)
        else:
            batch.add_valid(result, raw, topic, key_text)
    except Exception as exc:
        logger.exception("%s[%s]@%s could not be processed", raw.topic, raw.partition, raw.offset)
        batch.add_invalid(
            raw, topic, Invalid("unprocessable", f"{type(exc).__name__}: {_one_line(exc)}")
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the sink does with one record: land it in `table` as contract `version`
    (1, 0, or "removal" for a registry tombstone), or dead-letter it with `kind` and
    `detail`. Computed by `absorb_record` itself, so it cannot drift from the sink."""

    table: str  # raw.access_events, ..., or raw.dead_letters
    version: str  # "v1", "v0", "removal", or "" for a dead letter
    kind: str = ""
    detail: str = ""

    @property
    def valid(self) -> bool:
        return not self.kind

    def __str__(self) -> str:
        if self.valid:
            return f"valid {self.version} → {self.table}"
        return f"dead letter: {self.kind} — {self.detail}"


def contract_topic(topic: str, prefix: str = "") -> str | None:
    """The contract's name of a data topic (`prefix` + name), None for any other."""
    if not topic.startswith(prefix):
        return None
    name = topic[len(prefix) :]
    return name if name in DATA_TOPICS else None


def verdict(
    validator: Validator, record: Record, contract: str, now: datetime | None = None
) -> Verdict:
    """The sink's verdict on `record` of data topic `contract`, with `now` (default the
    record's Kafka timestamp, else the clock) as the moment it is read."""
    moment = now or kafka_datetime(record.timestamp_ms) or datetime.now(UTC)
    batch = Batch()
    absorb_record(batch, validator.validate, record, contract, moment)
    if batch.dead:
        letter = batch.dead[0]
        return Verdict("raw.dead_letters", "", letter.kind, letter.detail)
    table = f"raw.{TABLES[contract]}"
    if record.value is None:
        return Verdict(table, "removal")
    decoded = validator.validate(contract, record.value, moment)
    old = type(decoded) in (AccessEventV0, HealthReportV0)
    return Verdict(table, "v0" if old else "v1")


def caused_by_record(exc: BaseException) -> bool:
    """True when a failed batch write is explained by what a record holds (bad data:
    bisect and quarantine), False for infrastructure (connection, disk, privileges,
    the DLQ topic: pause and retry with backoff)."""
    if isinstance(exc, DeadLetterQueueUnavailable | KafkaException):
        return False
    if isinstance(exc, psycopg2.Error):
        code = exc.pgcode or ""
        if code:
            # 22: data exception, 23: integrity violation, 54: program limit exceeded
            return code[:2] in ("22", "23", "54")
        return isinstance(exc, psycopg2.DataError | psycopg2.IntegrityError)
    return isinstance(exc, Exception)  # a Python error while encoding the record's rows


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m streaming.consumer",
        description="Land the smart-access topics in PostgreSQL exactly once.",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"records per transaction at most (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--batch-timeout",
        type=_positive_float,
        default=DEFAULT_BATCH_TIMEOUT,
        help=f"seconds a batch may wait for more records (default {DEFAULT_BATCH_TIMEOUT})",
    )
    parser.add_argument(
        "--topic",
        action="append",
        choices=DATA_TOPICS,
        help="consume only this topic (repeatable; default all three)",
    )
    parser.add_argument(
        "--group", default=CONSUMER_GROUP, help=f"consumer group (default {CONSUMER_GROUP})"
    )
    parser.add_argument(
        "--topic-prefix",
        default="",
        help="read <prefix>smart-access.* (environments sharing one cluster)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_BYTES,
        help=f"larger payloads are dead-lettered (default {DEFAULT_MAX_BYTES})",
    )
    parser.add_argument(
        "--max-skew",
        type=_positive_float,
        default=300.0,
        help="seconds a timestamp may lie in the future (default 300)",
    )
    parser.add_argument(
        "--min-timestamp",
        type=iso_timestamp,
        default=DEFAULT_MIN_TIMESTAMP,
        metavar="ISO",
        help="device timestamps before this are dead-lettered as implausible_timestamp "
        f"(default {DEFAULT_MIN_TIMESTAMP.date().isoformat()})",
    )
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="off",
        help="wait for the WAL flush at each batch commit (default off: a crash can only "
        "roll rows and positions back together, and they are re-read from Kafka)",
    )
    parser.add_argument(
        "--instance-id",
        default=os.environ.get("CONSUMER_INSTANCE_ID") or None,
        help="static group membership under this id, unique per consumer process "
        "(env CONSUMER_INSTANCE_ID; default none: dynamic membership)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (default 0: off)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        kafka = KafkaSettings()
        postgres = PostgresSettings()
    except ValueError as exc:
        sys.stderr.write(f"error: bad settings in the environment: {settings_error(exc)}\n")
        return 2
    consumer = SinkConsumer(
        kafka,
        postgres.dsn(),
        group=args.group,
        topics=args.topic or DATA_TOPICS,
        topic_prefix=args.topic_prefix,
        batch_size=args.batch_size,
        batch_timeout=args.batch_timeout,
        max_message_bytes=args.max_message_bytes,
        max_skew=timedelta(seconds=args.max_skew),
        min_timestamp=args.min_timestamp,
        synchronous_commit=args.synchronous_commit == "on",
        metrics_port=args.metrics_port or None,
        instance_id=args.instance_id,
    )
    signal.signal(signal.SIGTERM, consumer.request_stop)
    signal.signal(signal.SIGINT, consumer.request_stop)
    try:
        return consumer.run()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
