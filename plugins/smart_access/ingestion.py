"""The ingestion gate: is the stream landing, and how far behind is the sink?

Two measurements, each turned into ok / warn / fail by the thresholds of
`PipelineSettings`:

- **consumer-group lag** per partition of the data topics: the end offset minus the
  group's committed offset in Kafka (the sink commits there after each database
  transaction, for monitoring). A partition the group never committed counts from
  its earliest retained offset.
- **raw freshness**: the newest `_ingested_at` of the landing tables, measured at the
  end of the run's data interval (so a rerun of an old interval gives the same
  answer), and the rows ingested within the interval.

The functions take a confluent-kafka `AdminClient` and a DB-API cursor, so they run
the same with the Airflow hooks (`lag_from_connection`, `freshness_from_connection`)
or with plain clients in tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from psycopg2 import sql

__all__ = [
    "GATED_TABLES",
    "RAW_TABLES",
    "GateResult",
    "PartitionLag",
    "TableFreshness",
    "evaluate_freshness",
    "evaluate_lag",
    "measure_consumer_lag",
    "measure_raw_freshness",
    "worst",
]

logger = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail"]
_RANK: dict[Status, int] = {"ok": 0, "warn": 1, "fail": 2}

RAW_TABLES = ("access_events", "device_health", "device_registry")
# The registry changes rarely: its age says nothing about ingestion health.
GATED_TABLES = ("access_events", "device_health")


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed_offset: int | None
    end_offset: int
    lag: int


@dataclass(frozen=True)
class TableFreshness:
    table_name: str
    last_ingested_at: datetime | None
    age_seconds: float | None
    rows_in_interval: int
    is_gated: bool


@dataclass(frozen=True)
class GateResult:
    status: Status
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(*results: GateResult) -> GateResult:
    status: Status = "ok"
    reasons: list[str] = []
    for result in results:
        if _RANK[result.status] > _RANK[status]:
            status = result.status
        reasons += result.reasons
    return GateResult(status, reasons)


# --- Kafka ------------------------------------------------------------------------------


def measure_consumer_lag(
    admin: Any, consumer: Any, topics: Sequence[str], timeout: float = 15.0
) -> list[PartitionLag]:
    """Lag of `consumer`'s group on every partition of `topics`.

    `admin` (an AdminClient) reads partitions and end offsets; `consumer` (a Consumer
    configured with the group's `group.id`, never subscribed, so it does not join the
    group) reads the committed offsets. Not `AdminClient.list_consumer_group_offsets`:
    librdkafka 2.16 crashes the process when that request meets a coordinator that is
    not ready yet (a fresh broker), while the consumer's OffsetFetch retries it.
    """
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    metadata = admin.list_topics(timeout=timeout)
    missing = [t for t in topics if t not in metadata.topics]
    if missing:
        raise RuntimeError(f"topics missing on the broker: {', '.join(missing)}")
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(metadata.topics[topic].partitions)
    ]
    committed: dict[tuple[str, int], int | None] = {
        (tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
        for tp in _committed(consumer, partitions, timeout)
    }

    def offsets(spec: Any) -> dict[tuple[str, int], int]:
        futures = admin.list_offsets(
            {TopicPartition(tp.topic, tp.partition): spec for tp in partitions},
            request_timeout=timeout,
        )
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    ends = offsets(OffsetSpec.latest())
    starts = offsets(OffsetSpec.earliest())
    result = []
    for tp in partitions:
        key = (tp.topic, tp.partition)
        position = committed.get(key)
        start = starts[key]
        consumed_to = start if position is None else max(position, start)
        result.append(
            PartitionLag(
                topic=tp.topic,
                partition=tp.partition,
                committed_offset=position,
                end_offset=ends[key],
                lag=max(ends[key] - consumed_to, 0),
            )
        )
    return result


def _committed(consumer: Any, partitions: list[Any], timeout: float) -> list[Any]:
    """Committed offsets, waiting out a group coordinator that is still being set up
    (a fresh cluster creates `__consumer_offsets` on the first group request)."""
    from confluent_kafka import KafkaError, KafkaException

    retriable = {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
    deadline = time.monotonic() + timeout
    while True:
        try:
            return list(consumer.committed(partitions, timeout=timeout))
        except KafkaException as exc:
            if exc.args[0].code() not in retriable or time.monotonic() > deadline:
                raise
            logger.info("group coordinator not ready (%s); retrying", exc.args[0].name())
            time.sleep(0.5)


def evaluate_lag(lags: Iterable[PartitionLag], warn_at: int, fail_at: int) -> GateResult:
    lags = list(lags)
    total = sum(item.lag for item in lags)
    if not lags:
        return GateResult("warn", ["no partitions to measure lag on"])
    worst_partition = max(lags, key=lambda item: item.lag)
    where = f"(largest: {worst_partition.topic}[{worst_partition.partition}] {worst_partition.lag})"
    never = [f"{i.topic}[{i.partition}]" for i in lags if i.committed_offset is None and i.lag]
    reasons = []
    if never:
        reasons.append(f"the sink never committed on {len(never)} partitions with data")
    if total >= fail_at:
        return GateResult("fail", [f"consumer lag {total} >= fail threshold {fail_at} {where}"])
    if total >= warn_at:
        return GateResult(
            "warn", [f"consumer lag {total} >= warn threshold {warn_at} {where}", *reasons]
        )
    return GateResult("warn" if never else "ok", reasons)


# --- PostgreSQL -----------------------------------------------------------------------------


def measure_raw_freshness(
    cursor: Any,
    interval_start: datetime,
    interval_end: datetime,
    lookback: timedelta,
    tables: Sequence[str] = RAW_TABLES,
) -> list[TableFreshness]:
    """Newest `_ingested_at` before `interval_end` and rows ingested within the interval.

    The range filter lets the BRIN index on `_ingested_at` skip the table's history;
    only a table quiet for longer than `lookback` costs a wider scan.
    """
    since = min(interval_start, interval_end - lookback)
    result = []
    for table in tables:
        name = sql.Identifier("raw", table)
        cursor.execute(
            sql.SQL(
                "select max(_ingested_at), count(*) filter (where _ingested_at >= %(start)s) "
                "from {} where _ingested_at >= %(since)s and _ingested_at < %(end)s"
            ).format(name),
            {"start": interval_start, "since": since, "end": interval_end},
        )
        last, rows = cursor.fetchone()
        if last is None:
            cursor.execute(
                sql.SQL("select max(_ingested_at) from {} where _ingested_at < %(end)s").format(
                    name
                ),
                {"end": interval_end},
            )
            last = cursor.fetchone()[0]
        age = None if last is None else max((interval_end - last).total_seconds(), 0.0)
        result.append(
            TableFreshness(
                table_name=f"raw.{table}",
                last_ingested_at=last,
                age_seconds=age,
                rows_in_interval=int(rows),
                is_gated=table in GATED_TABLES,
            )
        )
    return result


def evaluate_freshness(
    items: Iterable[TableFreshness], warn_after: float, fail_after: float
) -> GateResult:
    status: Status = "ok"
    reasons: list[str] = []
    for item in items:
        if not item.is_gated:
            continue
        if item.age_seconds is None:
            reasons.append(f"{item.table_name} has no rows yet: is the consumer running?")
            status = "fail" if status == "fail" else "warn"
        elif item.age_seconds >= fail_after:
            reasons.append(
                f"{item.table_name} newest row is {item.age_seconds:.0f}s old "
                f">= fail threshold {fail_after:.0f}s"
            )
            status = "fail"
        elif item.age_seconds >= warn_after:
            reasons.append(
                f"{item.table_name} newest row is {item.age_seconds:.0f}s old "
                f">= warn threshold {warn_after:.0f}s"
            )
            status = "fail" if status == "fail" else "warn"
    return GateResult(status, reasons)
