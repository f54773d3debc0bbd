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
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import psycopg2
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from streaming import logs
from streaming.cli import ArgumentParser
from streaming.clients import consumer_config, producer_config
from streaming.contracts import DEFAULT_MAX_BYTES, Invalid, Validator
from streaming.settings import KafkaSettings, PostgresSettings
from streaming.sink import Batch, BatchResult, DeadLetter, PostgresSink, Record
from streaming.topics import CONSUMER_GROUP, DATA_TOPICS, DLQ

__all__ = ["DeadLetterQueue", "SinkConsumer", "main"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 20_000
DEFAULT_BATCH_TIMEOUT = 0.25
_PG_DOWN = (psycopg2.OperationalError, psycopg2.InterfaceError)
_AUTH_ERRORS = ("password authentication failed", "does not exist", "no pg_hba.conf entry")


class DeadLetterQueueUnavailable(RuntimeError):
    """The DLQ topic did not acknowledge the batch's dead letters in time."""


class DeadLetterQueue:
    """Copies dead letters to `smart-access.dlq` with the reason in headers.

    Called inside the batch transaction, before COMMIT: a failure rolls the batch
    back. A crash between the flush and the COMMIT can repeat a DLQ message, so the
    topic is at-least-once; `raw.dead_letters` is the exactly-once record.
    """

    def __init__(
        self, kafka: KafkaSettings, client_id: str, topic: str = DLQ, timeout: float = 15.0
    ) -> None:
        self.topic = topic
        self.producer = Producer(producer_config(kafka, f"{client_id}-dlq", **{"linger.ms": 5}))
        self.timeout = timeout
        self._failures = 0

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failures += 1

    def __call__(self, letters: Sequence[DeadLetter]) -> None:
        self._failures = 0
        for letter in letters:
            rec = letter.record
            headers: list[tuple[str, str | bytes | None]] = [
                ("error_kind", letter.kind.encode()),
                ("error_detail", letter.detail.encode()),
                ("source_topic", rec.topic.encode()),
                ("source_partition", str(rec.partition).encode()),
                ("source_offset", str(rec.offset).encode()),
                ("source_timestamp_ms", str(rec.timestamp_ms).encode()),
                ("consumer_group", CONSUMER_GROUP.encode()),
            ]
            while True:
                try:
                    self.producer.produce(
                        self.topic,
                        value=rec.value,
                        key=rec.key,
                        headers=headers,
                        on_delivery=self._delivered,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.1)
        remaining = self.producer.flush(self.timeout)
        if remaining or self._failures:
            raise DeadLetterQueueUnavailable(
                f"{remaining} dead letters not acknowledged by {self.topic}, "
                f"{self._failures} failed"
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
        max_backoff: float = 30.0,
        consumer_overrides: dict[str, Any] | None = None,
        synchronous_commit: bool = False,
    ) -> None:
        self.client_id = f"{socket.gethostname()}-{os.getpid()}"
        self.group = group
        self.prefix = topic_prefix
        self.topics = [topic_prefix + t for t in topics]
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.max_backoff = max_backoff
        self.validator = Validator(max_bytes=max_message_bytes, max_skew=max_skew)
        self.sink = PostgresSink(postgres_dsn, group, self.client_id, synchronous_commit)
        self.dlq = DeadLetterQueue(kafka, self.client_id, topic=topic_prefix + DLQ)
        self.consumer = Consumer(
            consumer_config(
                kafka,
                group,
                self.client_id,
                error_cb=self._kafka_error,
                **(consumer_overrides or {}),
            )
        )
        self.batch: Batch | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-writer")
        self._inflight: tuple[Batch, Future[BatchResult]] | None = None
        self.batch_deadline = 0.0
        self.assignment: set[tuple[str, int]] = set()
        self.need_rewind = False
        self.stopping = False
        self.backoff = 0.5
        self.totals = {"rows": 0, "dead": 0, "batches": 0, "skipped": 0}
        self._last_kafka_error = 0.0
        self._last_report = time.monotonic()

    # --- signals and errors --------------------------------------------------
    def request_stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        if not self.stopping:
            logger.info("%s received: finishing the current batch", signal.Signals(signum).name)
        self.stopping = True

    def _kafka_error(self, err: KafkaError) -> None:
        if err.fatal():
            logger.error("fatal Kafka error: %s", err)
            self.stopping = True
            return
        now = time.monotonic()
        if now - self._last_kafka_error > 10:
            logger.warning("Kafka: %s (the client keeps reconnecting)", err.str())
            self._last_kafka_error = now

    # --- rebalance callbacks -------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle(retry=False)  # the sink's connection is free for the position lookup
        wanted = [(p.topic, p.partition) for p in partitions]
        positions = self._retry_pg("reading stored positions", self.sink.stored_positions, wanted)
        if positions is None:  # stopping while PostgreSQL is down: read nothing
            consumer.assign(partitions)
            consumer.pause(partitions)
            return
        for p in partitions:
            p.offset = positions.get((p.topic, p.partition), OFFSET_BEGINNING)
        consumer.assign(partitions)
        self.assignment |= set(wanted)
        logger.info(
            "assigned %s",
            ", ".join(
                f"{p.topic}[{p.partition}]@{'start' if p.offset < 0 else p.offset}"
                for p in partitions
            ),
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        # the partitions are still ours until this callback returns: land what we have
        if not self._flush(retry=False):
            self.batch = None
        self.assignment -= gone
        self.need_rewind = self.need_rewind and bool(self.assignment)
        logger.info("revoked %d partitions", len(gone))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        self._settle(retry=False)  # already written: harmless, the database dedupes
        if self.batch is not None:
            # someone else may own them already: never write their records
            self.batch = self.batch.drop_partitions(gone)
        self.assignment -= gone
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
        logger.info(
            "stopped: %d rows, %d dead letters in %d batches",
            self.totals["rows"],
            self.totals["dead"],
            self.totals["batches"],
        )
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
        timeout = max(0.0, self.batch_deadline - called)
        want = self.batch_size - (self.batch.size if self.batch else 0)
        messages = self.consumer.consume(num_messages=max(1, min(want, 10_000)), timeout=timeout)
        if messages:
            self._absorb(messages, called)
        if (
            self.batch is not None
            and self.batch.size
            and (self.batch.size >= self.batch_size or time.monotonic() >= self.batch_deadline)
        ):
            self._submit(retry=True)

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
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self._kafka_error(err)
                continue
            topic = msg.topic()[cut:]
            value = msg.value()
            key = msg.key()
            raw = Record(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1], key, value)
            try:
                key_text = None if key is None else key.decode()
            except UnicodeDecodeError:
                batch.add_invalid(raw, topic, Invalid("invalid_key", "message key is not UTF-8"))
                continue
            if key_text is not None and "\x00" in key_text:
                batch.add_invalid(raw, topic, Invalid("invalid_key", "message key contains U+0000"))
                continue
            result = validate(topic, value, now)
            if type(result) is Invalid:
                batch.add_invalid(raw, topic, result)
            else:
                batch.add_valid(result, raw, topic, key_text)  # type: ignore[arg-type]

    def _lag(self, batch: Batch) -> int | None:
        total = 0
        try:
            for (topic, partition), next_offset in batch.next_offsets.items():
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
                if high >= 0:
                    total += max(0, high - next_offset)
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
        self._inflight = (batch, self._writer.submit(self.sink.write, batch, self.dlq))

    def _settle(self, retry: bool) -> bool:
        """Wait for the batch being written; False if it failed (positions are rewound
        and the batch being built, which follows it, is dropped)."""
        if self._inflight is None:
            return True
        batch, future = self._inflight
        self._inflight = None
        try:
            result = future.result()
        except (*_PG_DOWN, DeadLetterQueueUnavailable) as exc:
            if isinstance(exc, _PG_DOWN):
                self._raise_if_config_error(exc)
            self.batch = None
            self.need_rewind = True
            self._pause()
            what = "PostgreSQL" if isinstance(exc, _PG_DOWN) else "the DLQ topic"
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
        try:
            if parts:
                # re-assigning sets every fetch position at once, whatever state the
                # fetcher is in (a seek right after resume can race with it)
                self.consumer.resume(parts)
                self.consumer.assign(parts)
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
        "--synchronous-commit",
        choices=["on", "off"],
        default="off",
        help="wait for the WAL flush at each batch commit (default off: a crash can only "
        "roll rows and positions back together, and they are re-read from Kafka)",
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
        sys.stderr.write(f"error: bad settings in the environment: {_one_line(exc)}\n")
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
        synchronous_commit=args.synchronous_commit == "on",
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
