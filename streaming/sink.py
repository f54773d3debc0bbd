"""The PostgreSQL side of the consumer: one transaction per micro-batch.

A batch lands in a single transaction that holds the valid rows (COPY), the dead
letters, the next positions in `ops.consumer_offsets` and one `ops.ingest_batches`
row. Either all of it is there or none of it is, which is what makes landing
exactly once: the consumer seeks to the stored positions whenever it (re)starts.

Two slower paths keep that promise when the fast one cannot:

* A row the database refuses (a constraint the validator does not know, say) is
  isolated by bisection under savepoints and dead-lettered as `db_rejected`;
  its neighbours land.
* A COPY that hits rows already present (after `streaming.replay`, or a consumer
  that lost its partitions without noticing) is redone through a temporary table
  with `INSERT ... ON CONFLICT DO NOTHING`, so present rows are skipped.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2.extras import execute_values

from streaming.contracts import (
    AccessEvent,
    AccessEventV0,
    Contract,
    DeviceRegistration,
    DeviceRemoval,
    HealthReport,
    HealthReportV0,
    Invalid,
    v0_event_uuid,
)
from streaming.topics import DEVICES, EVENTS, HEALTH

__all__ = [
    "COLUMNS",
    "TABLES",
    "Batch",
    "DeadLetter",
    "Halt",
    "PostgresSink",
    "Record",
    "Stored",
    "copy_line",
    "failures",
    "kafka_datetime",
]

logger = logging.getLogger(__name__)

TABLES: Final = {EVENTS: "access_events", HEALTH: "device_health", DEVICES: "device_registry"}
_KAFKA_COLUMNS: Final = (
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "kafka_key",
    "kafka_log_epoch",
)
COLUMNS: Final = {
    "access_events": (
        *_KAFKA_COLUMNS,
        "schema_version",
        "event_id",
        "device_id",
        "household_id",
        "event_ts",
        "event_type",
        "trigger_source",
        "user_id",
        "failure_reason",
        "source_event_id",
    ),
    "device_health": (
        *_KAFKA_COLUMNS,
        "schema_version",
        "device_id",
        "reported_at",
        "battery_pct",
        "signal_strength_dbm",
        "is_online",
        "firmware_version",
        "temperature_c",
    ),
    "device_registry": (
        *_KAFKA_COLUMNS,
        "schema_version",
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
    ),
}
_TOPIC_OF_TABLE: Final = {table: topic for topic, table in TABLES.items()}

# COPY text format: backslash, tab, newline and carriage return are escaped; \N is NULL.
_ESCAPE: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE: Final = frozenset("\\\t\n\r")


def _text(value: str | None) -> str:
    if value is None:
        return "\\N"
    if _NEEDS_ESCAPE.isdisjoint(value):
        return value
    return value.translate(_ESCAPE)


_second_cache: dict[int, str] = {}


# Kafka record timestamps are set by producers; outside this range they are stored as NULL.
_KAFKA_TIME_MIN_MS: Final = 0
_KAFKA_TIME_MAX_MS: Final = 253_402_300_799_000  # 9999-12-31T23:59:59Z


def kafka_datetime(ms: int) -> datetime | None:
    """Kafka's epoch milliseconds as a datetime; None when absent (-1) or out of range."""
    if not _KAFKA_TIME_MIN_MS <= ms <= _KAFKA_TIME_MAX_MS:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)


def kafka_time(ms: int) -> str:
    """Kafka's epoch milliseconds as timestamptz text, cheap for runs of one second."""
    seconds, millis = divmod(ms, 1000)
    prefix = _second_cache.get(seconds)
    if prefix is None:
        if not _KAFKA_TIME_MIN_MS <= ms <= _KAFKA_TIME_MAX_MS:
            return "\\N"
        if len(_second_cache) > 4096:
            _second_cache.clear()
        prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
        _second_cache[seconds] = prefix
    return f"{prefix}.{millis:03d}+00"


def copy_line(
    record: Contract | DeviceRemoval,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: str | None,
    epoch: int = 0,
) -> str:
    """One row of COPY text for the record's landing table."""
    head = (
        f"{_text(topic)}\t{partition}\t{offset}\t{kafka_time(timestamp_ms)}\t{_text(key)}\t"
        f"{epoch}\t"
    )
    if type(record) is AccessEvent:
        return (
            f"{head}{record.schema_version}\t{record.event_id}\t{_text(record.device_id)}\t"
            f"{_text(record.household_id)}\t{record.event_ts.isoformat()}\t{record.event_type}\t"
            f"{record.trigger_source}\t{_text(record.user_id)}\t"
            f"{record.failure_reason or chr(92) + 'N'}\t\\N\n"
        )
    if type(record) is HealthReport:
        temperature = "\\N" if record.temperature_c is None else repr(record.temperature_c)
        return (
            f"{head}{record.schema_version}\t{_text(record.device_id)}\t"
            f"{record.reported_at.isoformat()}\t{record.battery_pct}\t"
            f"{record.signal_strength_dbm}\t{'t' if record.is_online else 'f'}\t"
            f"{_text(record.firmware_version)}\t{temperature}\n"
        )
    if type(record) is AccessEventV0:
        return (
            f"{head}0\t{v0_event_uuid(record.device_id, record.event_id)}\t"
            f"{_text(str(record.device_id))}\t\\N\t{record.event_ts.isoformat()}\t"
            f"{record.event_type}\t{record.trigger_source}\t\\N\t\\N\t{_text(record.event_id)}\n"
        )
    if type(record) is HealthReportV0:
        return (
            f"{head}0\t{_text(str(record.device_id))}\t{record.reported_at.isoformat()}\t"
            f"{record.battery_pct}\t{record.signal_strength_dbm}\t"
            f"{'t' if record.is_online else 'f'}\t\\N\t\\N\n"
        )
    if type(record) is DeviceRemoval:
        return (
            f"{head}0\t{_text(record.device_id)}\t\\N\t\\N\t\\N\t\\N\t\\N\tremoved\t"
            f"{record.removed_at.isoformat()}\t\\N\t\\N\n"
        )
    assert type(record) is DeviceRegistration
    return (
        f"{head}{record.schema_version}\t{_text(record.device_id)}\t"
        f"{_text(record.household_id)}\t{record.device_type}\t{_text(record.model)}\t"
        f"{_text(record.firmware_version)}\t{record.installed_at.isoformat()}\t"
        f"{record.status}\t{record.updated_at.isoformat()}\t{_text(record.region)}\t"
        f"{_text(record.timezone)}\n"
    )


@dataclass(slots=True)
class Record:
    """Kafka coordinates and bytes of one consumed record (for dead-lettering)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    epoch: int = 0  # the partition's log epoch (ops.consumer_offsets.log_epoch)


@dataclass(slots=True)
class DeadLetter:
    record: Record
    kind: str
    detail: str
    contract_topic: str = ""

    def __post_init__(self) -> None:
        # the detail may quote the offending value: keep it storable and short
        self.detail = self.detail.replace("\x00", "\\u0000")[:1000]


@dataclass
class Batch:
    """Everything one transaction lands; built by the consumer, written by the sink."""

    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_monotonic: float = field(default_factory=time.monotonic)
    lines: dict[str, list[str]] = field(default_factory=lambda: {table: [] for table in COLUMNS})
    records: dict[str, list[Record]] = field(
        default_factory=lambda: {table: [] for table in COLUMNS}
    )
    dead: list[DeadLetter] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    epochs: dict[tuple[str, int], int] = field(default_factory=dict)
    valid: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    invalid: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    kafka_timestamps: list[int] = field(default_factory=list)
    # event_ts of each access-event line, in the order of lines["access_events"]
    event_times: list[datetime] = field(default_factory=list)
    bytes: int = 0
    consumer_lag: int | None = None
    size: int = 0

    @property
    def min_event_at(self) -> datetime | None:
        return min(self.event_times) if self.event_times else None

    @property
    def max_event_at(self) -> datetime | None:
        return max(self.event_times) if self.event_times else None

    def add_valid(
        self,
        record: Contract | DeviceRemoval,
        raw: Record,
        contract_topic: str,
        key: str | None,
    ) -> None:
        """`contract_topic` is the topic's name in the contract (without any prefix)."""
        table = TABLES[contract_topic]
        line = copy_line(
            record, raw.topic, raw.partition, raw.offset, raw.timestamp_ms, key, raw.epoch
        )
        moment = record.event_ts if type(record) in (AccessEvent, AccessEventV0) else None  # type: ignore[union-attr]
        self._add_line(table, line, raw, moment)

    def _add_line(self, table: str, line: str, raw: Record, moment: datetime | None) -> None:
        self.lines[table].append(line)
        self.records[table].append(raw)
        if moment is not None:
            self.event_times.append(moment)
        self.valid[_TOPIC_OF_TABLE[table]] += 1
        self._account(raw)

    def add_invalid(self, raw: Record, contract_topic: str, invalid: Invalid) -> None:
        self.dead.append(DeadLetter(raw, invalid.kind, invalid.detail, contract_topic))
        if contract_topic in self.invalid:
            self.invalid[contract_topic] += 1
        self._account(raw)

    def _account(self, raw: Record) -> None:
        self.next_offsets[(raw.topic, raw.partition)] = raw.offset + 1
        self.epochs[(raw.topic, raw.partition)] = raw.epoch
        self.kafka_timestamps.append(raw.timestamp_ms)
        self.bytes += len(raw.value or b"")
        self.size += 1

    def _entries(self) -> list[tuple[str, int, int, int, Any]]:
        """Every record as (topic, partition, offset, kind, payload), in offset order
        within each partition (kind 0: a valid line, 1: a dead letter)."""
        entries: list[tuple[str, int, int, int, Any]] = []
        for table, records in self.records.items():
            times = iter(self.event_times) if table == "access_events" else None
            for line, raw in zip(self.lines[table], records, strict=True):
                moment = next(times) if times is not None else None
                entries.append(
                    (raw.topic, raw.partition, raw.offset, 0, (table, line, raw, moment))
                )
        for dead in self.dead:
            r = dead.record
            entries.append((r.topic, r.partition, r.offset, 1, dead))
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
        return entries

    def _subset(self, entries: list[tuple[str, int, int, int, Any]]) -> Batch:
        part = Batch(started_at=self.started_at, started_monotonic=self.started_monotonic)
        part.consumer_lag = self.consumer_lag
        for _topic, _partition, _offset, kind, payload in entries:
            if kind == 0:
                part._add_line(*payload)
            else:
                part.dead.append(payload)
                if payload.contract_topic in part.invalid:
                    part.invalid[payload.contract_topic] += 1
                part._account(payload.record)
        return part

    def split(self) -> tuple[Batch, Batch]:
        """Two batches that land this one's records in two transactions, in order: each
        partition's records in the first half all come before its records in the second,
        so positions committed with the first half never skip a record."""
        entries = self._entries()
        half = len(entries) // 2
        return self._subset(entries[:half]), self._subset(entries[half:])

    def records_in_order(self) -> list[tuple[Record, str, DeadLetter | None]]:
        """(record, contract topic, its dead letter or None) for every record."""
        out: list[tuple[Record, str, DeadLetter | None]] = []
        for _t, _p, _o, kind, payload in self._entries():
            if kind == 0:
                out.append((payload[2], _TOPIC_OF_TABLE[payload[0]], None))
            else:
                out.append((payload.record, payload.contract_topic, payload))
        return out

    def landing(
        self,
        refused: set[tuple[str, int, int, int]]
        | frozenset[tuple[str, int, int, int]] = frozenset(),
    ) -> list[tuple[str, int, int, int, str]]:
        """Coordinates (with log epoch) and target table of every valid record."""
        return [
            (*_coordinates(r), f"raw.{table}")
            for table, records in self.records.items()
            for r in records
            if _coordinates(r) not in refused
        ]

    def drop_partitions(self, gone: set[tuple[str, int]]) -> Batch:
        """The same batch without the records of partitions this consumer lost."""
        return self._subset([e for e in self._entries() if (e[0], e[1]) not in gone])


def _coordinates(record: Record) -> tuple[str, int, int, int]:
    return (record.topic, record.partition, record.offset, record.epoch)


def failures(dead: Sequence[DeadLetter]) -> list[tuple[str, int, int, int, str, str]]:
    """Each dead letter's coordinates with its kind and detail."""
    return [(*_coordinates(d.record), d.kind, d.detail) for d in dead]


def _mark_dead_letters(
    cur: Any, assignments: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """Update raw.dead_letters from rows of (coordinates..., *columns)."""
    if not rows:
        return
    names = ", ".join(columns)
    placeholders = ", ".join(["%s"] * len(columns))
    execute_values(
        cur,
        f"update raw.dead_letters as d set {assignments} "
        f"from (values %s) as v (topic, partition, kafka_offset, epoch, {names}) "
        "where d.kafka_topic = v.topic and d.kafka_partition = v.partition "
        "and d.kafka_offset = v.kafka_offset and d.kafka_log_epoch = v.epoch",
        rows,
        template=f"(%s, %s, %s::bigint, %s::smallint, {placeholders})",
        page_size=len(rows),
    )


@dataclass(frozen=True)
class BatchResult:
    rows: int
    dead_letters: int
    skipped_existing: int
    db_rejected: int
    seconds: float
    # committed rows by contract topic, and dead letters by (contract topic, kind)
    landed_by_topic: dict[str, int] = field(default_factory=dict)
    dead_by_kind: dict[tuple[str, str], int] = field(default_factory=dict)

    def __add__(self, other: BatchResult) -> BatchResult:
        landed = dict(self.landed_by_topic)
        for topic, n in other.landed_by_topic.items():
            landed[topic] = landed.get(topic, 0) + n
        dead = dict(self.dead_by_kind)
        for key, n in other.dead_by_kind.items():
            dead[key] = dead.get(key, 0) + n
        return BatchResult(
            self.rows + other.rows,
            self.dead_letters + other.dead_letters,
            self.skipped_existing + other.skipped_existing,
            self.db_rejected + other.db_rejected,
            self.seconds + other.seconds,
            landed,
            dead,
        )


@dataclass(frozen=True, slots=True)
class Stored:
    """What `ops.consumer_offsets` holds for one partition."""

    next_offset: int
    log_epoch: int
    topic_id: str | None


@dataclass(frozen=True, slots=True)
class Halt:
    """A partition whose stored position does not belong to the log Kafka now has."""

    topic: str
    partition: int
    reason: str  # topic_recreated | offset_beyond_log_end | log_start_beyond_position
    stored_offset: int
    log_start: int | None
    log_end: int | None
    stored_topic_id: str | None
    actual_topic_id: str | None
    log_epoch: int


DeadLetterPublisher = Callable[[Sequence[DeadLetter]], None]

_UPSERT_OFFSETS: Final = """
insert into ops.consumer_offsets as o
    (consumer_group, topic, partition, next_offset, log_epoch, topic_id)
values %s
on conflict (consumer_group, topic, partition) do update
    set next_offset = excluded.next_offset,
        topic_id = coalesce(excluded.topic_id, o.topic_id),
        updated_at = clock_timestamp()
    where o.log_epoch = excluded.log_epoch and o.next_offset < excluded.next_offset
"""
_INSERT_DEAD: Final = """
insert into raw.dead_letters
    (kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, kafka_key, payload,
     error_kind, error_detail, kafka_log_epoch)
values %s
on conflict (kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch) do nothing
returning kafka_topic, kafka_partition, kafka_offset
"""
_INSERT_BATCH: Final = """
insert into ops.ingest_batches (
    consumer_group, consumer_id, started_at, duration_ms,
    events_valid, events_invalid, health_valid, health_invalid, devices_valid, devices_invalid,
    bytes, min_event_at, max_event_at, latency_p50_ms, latency_max_ms, consumer_lag)
values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
_DB_REJECTIONS: Final = (psycopg2.DataError, psycopg2.IntegrityError)


class PostgresSink:
    """Writes batches for one consumer; owns one connection."""

    def __init__(
        self, dsn: str, group: str, consumer_id: str, synchronous_commit: bool = False
    ) -> None:
        self.dsn = dsn
        self.synchronous_commit = synchronous_commit
        self.group = group
        self.consumer_id = consumer_id
        self._conn: psycopg2.extensions.connection | None = None
        self._start_recorded = False
        # topic name -> its id in Kafka, stored with the positions (set by the consumer)
        self.topic_ids: dict[str, str] = {}

    # --- connection ---------------------------------------------------------
    def connect(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.dsn)
            with self._conn.cursor() as cur:
                if not self.synchronous_commit:
                    # Safe for exactly-once: rows and positions share one transaction, so a
                    # crash that loses the last commits loses both, and the consumer re-reads
                    # those records from Kafka. Saves a WAL flush wait per batch.
                    cur.execute("set synchronous_commit = off")
                if not self._start_recorded:  # once per process: restart loops show up
                    cur.execute(
                        "insert into ops.consumer_starts (consumer_id, consumer_group, pid) "
                        "values (%s, %s, %s) on conflict do nothing",
                        (self.consumer_id, self.group, os.getpid()),
                    )
            self._conn.commit()
            self._start_recorded = True
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.rollback()
            finally:
                self._conn.close()
        self._conn = None

    def discard(self) -> None:
        """Forget a broken connection without talking to the server."""
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
        self._conn = None

    def stored_positions(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {key: s.next_offset for key, s in self.stored_state(partitions).items()}

    def stored_state(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], Stored]:
        """Position, log epoch and topic id stored for each of `partitions` that has one."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "select topic, partition, next_offset, log_epoch, topic_id "
                    "from ops.consumer_offsets where consumer_group = %s",
                    (self.group,),
                )
                wanted = set(partitions)
                found = {
                    (t, p): Stored(o, e, i) for t, p, o, e, i in cur.fetchall() if (t, p) in wanted
                }
            conn.rollback()
        except BaseException:
            self.discard()
            raise
        return found

    def record_halt(self, halt: Halt) -> None:
        """Store an open halt of a partition (once: an open one is kept as it is)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "insert into ops.consumer_halts (consumer_group, topic, partition, reason, "
                    "stored_offset, log_start, log_end, stored_topic_id, actual_topic_id, "
                    "log_epoch) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "on conflict (consumer_group, topic, partition) where resolved_at is null "
                    "do nothing",
                    (
                        self.group,
                        halt.topic,
                        halt.partition,
                        halt.reason,
                        halt.stored_offset,
                        halt.log_start,
                        halt.log_end,
                        halt.stored_topic_id,
                        halt.actual_topic_id,
                        halt.log_epoch,
                    ),
                )
            conn.commit()
        except BaseException:
            self.discard()
            raise

    def redrive(
        self, batch: Batch
    ) -> tuple[list[tuple[str, int, int, int, str]], list[tuple[str, int, int, int, str, str]]]:
        """Land a batch of redriven dead letters and mark them, in one transaction.

        Returns (landed, still invalid): the coordinates of the rows that landed with
        their table, and of the records still invalid with their new kind and detail.
        Positions and batch statistics are not touched: these records were read before.
        """
        conn = self.connect()
        self._skipped = 0
        dead = list(batch.dead)
        try:
            with conn.cursor() as cur:
                for table, lines in batch.lines.items():
                    if lines:
                        self._land(cur, table, lines, batch.records[table], dead, True)
                refused = {_coordinates(d.record) for d in dead}
                landed = batch.landing(refused)
                failed = failures(dead)
                _mark_dead_letters(
                    cur,
                    "redriven_at = clock_timestamp(), redriven_to = v.target, "
                    "redrive_error_kind = null, redrive_error_detail = null",
                    ("target",),
                    landed,
                )
                _mark_dead_letters(
                    cur,
                    "redrive_error_kind = v.kind, redrive_error_detail = v.detail",
                    ("kind", "detail"),
                    failed,
                )
            conn.commit()
        except BaseException:
            self.discard()
            raise
        return landed, failed

    # --- the batch transaction ----------------------------------------------
    def write(self, batch: Batch, publish: DeadLetterPublisher | None = None) -> BatchResult:
        """Land the batch in one transaction; raises psycopg2 errors if the database is
        unreachable (nothing is committed then)."""
        conn = self.connect()
        started = time.monotonic()
        self._skipped = 0
        dead = list(batch.dead)
        try:
            with conn.cursor() as cur:
                rows = 0
                for table, lines in batch.lines.items():
                    if lines:
                        rows += self._land(cur, table, lines, batch.records[table], dead, False)
                rejected = len(dead) - len(batch.dead)
                fresh = self._insert_dead(cur, dead)
                execute_values(
                    cur,
                    _UPSERT_OFFSETS,
                    [
                        (self.group, t, p, o, batch.epochs.get((t, p), 0), self.topic_ids.get(t))
                        for (t, p), o in batch.next_offsets.items()
                    ],
                )
                now_ms = time.time() * 1000
                latencies = sorted(now_ms - ts for ts in batch.kafka_timestamps if ts > 0)
                valid = dict(batch.valid)
                invalid = dict(batch.invalid)
                for letter in dead[len(batch.dead) :]:
                    valid[letter.contract_topic] -= 1
                    invalid[letter.contract_topic] += 1
                cur.execute(
                    _INSERT_BATCH,
                    (
                        self.group,
                        self.consumer_id,
                        batch.started_at,
                        (time.monotonic() - batch.started_monotonic) * 1000,
                        valid[EVENTS],
                        invalid[EVENTS],
                        valid[HEALTH],
                        invalid[HEALTH],
                        valid[DEVICES],
                        invalid[DEVICES],
                        batch.bytes,
                        batch.min_event_at,
                        batch.max_event_at,
                        latencies[len(latencies) // 2] if latencies else None,
                        latencies[-1] if latencies else None,
                        batch.consumer_lag,
                    ),
                )
            # last before COMMIT: a batch that fails on any of its rows sends no copies
            if fresh and publish is not None:
                publish(fresh)
            conn.commit()
        except BaseException:
            self.discard()
            raise
        dead_by_kind: dict[tuple[str, str], int] = {}
        for letter in dead:
            key = (letter.contract_topic, letter.kind)
            dead_by_kind[key] = dead_by_kind.get(key, 0) + 1
        return BatchResult(
            rows=rows,
            dead_letters=len(dead),
            skipped_existing=self._skipped,
            db_rejected=rejected,
            seconds=time.monotonic() - started,
            landed_by_topic=valid,
            dead_by_kind=dead_by_kind,
        )

    def _land(
        self,
        cur: Any,
        table: str,
        lines: list[str],
        records: list[Record],
        dead: list[DeadLetter],
        skip_existing: bool,
    ) -> int:
        """COPY lines into raw.<table>; returns the number of rows handed to PostgreSQL."""
        cur.execute("savepoint land")
        try:
            if skip_existing:
                self._copy_skipping_existing(cur, table, lines)
            else:
                self._copy(cur, f"raw.{table}", table, lines)
            cur.execute("release savepoint land")
            return len(lines)
        except psycopg2.errors.UniqueViolation:
            cur.execute("rollback to savepoint land")
            if skip_existing:
                raise
            logger.info("%s: rows already present, landing through ON CONFLICT DO NOTHING", table)
            return self._land(cur, table, lines, records, dead, True)
        except _DB_REJECTIONS as exc:
            cur.execute("rollback to savepoint land")
            if len(lines) == 1:
                message = (exc.pgerror or str(exc)).strip().splitlines()[0]
                detail = f"{exc.pgcode}: {message}"
                logger.warning(
                    "%s[%s]@%s rejected by PostgreSQL: %s",
                    records[0].topic,
                    records[0].partition,
                    records[0].offset,
                    detail,
                )
                dead.append(DeadLetter(records[0], "db_rejected", detail, _TOPIC_OF_TABLE[table]))
                return 0
            half = len(lines) // 2
            return self._land(
                cur, table, lines[:half], records[:half], dead, skip_existing
            ) + self._land(cur, table, lines[half:], records[half:], dead, skip_existing)

    @staticmethod
    def _copy(cur: Any, target: str, table: str, lines: list[str]) -> None:
        columns = ", ".join(COLUMNS[table])
        cur.copy_expert(
            f"copy {target} ({columns}) from stdin", io.BytesIO("".join(lines).encode())
        )

    def _copy_skipping_existing(self, cur: Any, table: str, lines: list[str]) -> None:
        stage = f"pg_temp.stage_{table}"
        # every time, not once per connection: a savepoint rolled back after the
        # creation (a rejected row during bisection) takes the table with it
        cur.execute("select to_regclass(%s) is null", (stage,))
        if cur.fetchone()[0]:
            cur.execute(
                f"create temp table stage_{table} "
                f"(like raw.{table} including defaults) on commit delete rows"
            )
        cur.execute(f"delete from {stage}")
        self._copy(cur, stage, table, lines)
        columns = ", ".join(COLUMNS[table])
        cur.execute(
            f"insert into raw.{table} ({columns}) select {columns} from {stage} "
            "on conflict (kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch) do nothing"
        )
        self._skipped += len(lines) - cur.rowcount

    @staticmethod
    def _insert_dead(cur: Any, dead: list[DeadLetter]) -> list[DeadLetter]:
        """Insert dead letters not yet stored; returns those inserted now."""
        if not dead:
            return []
        rows = [
            (
                d.record.topic,
                d.record.partition,
                d.record.offset,
                kafka_datetime(d.record.timestamp_ms),
                psycopg2.Binary(d.record.key) if d.record.key is not None else None,
                psycopg2.Binary(d.record.value) if d.record.value is not None else None,
                d.kind,
                d.detail,
                d.record.epoch,
            )
            for d in dead
        ]
        inserted = execute_values(cur, _INSERT_DEAD, rows, fetch=True, page_size=len(rows))
        fresh = {(t, p, o) for t, p, o in inserted}
        return [d for d in dead if (d.record.topic, d.record.partition, d.record.offset) in fresh]
