"""Commit-safe watermarks and the transform lock around one `dbt build`.

Every build reads, per raw table, the rows landed in (ingested_through, new bound]
where the new bound is the newest `_ingested_at` older than `ops.transform_safe_bound()`:
the start of the oldest transaction still writing to the database. The loader stamps
rows with `clock_timestamp()` inside the transaction that commits them, so a batch
that is still open can only add rows after that bound; nothing lands behind the
watermark once it moved. The watermark moves only when the whole graph built
successfully; a failed build leaves it, and the next one reads the same rows again
(every model's write is idempotent for a re-read).

Two builds never overlap: a session advisory lock, held for the whole `dbt build`,
makes the second wait (up to `lock_wait_seconds`) and then give up with one line.

Downstream models read "rows written since the previous successful build" with the
stamps kept here (`previous_transformed_at` < `transformed_at`), never with a
`max()` over their own table. The alert rules' reference time is the data
watermark: the oldest, over the partitions of the events and health topics, of the
newest record time landed - so a lagging consumer delays alerts instead of
inventing them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.extensions

__all__ = [
    "SOURCES",
    "BuildWindow",
    "TransformBusy",
    "commit_window",
    "open_window",
    "read_watermarks",
    "transform_lock",
]

logger = logging.getLogger(__name__)

# dbt source table name -> raw relation
SOURCES = {
    "access_events": "raw.access_events",
    "device_health": "raw.device_health",
    "device_registry": "raw.device_registry",
}
# The topics whose record times make the data watermark (registry changes are rare).
DATA_SOURCES = ("access_events", "device_health")
LOCK_KEY = 0x5A_7F0E  # one constant for every builder of a database
NEG_INF = "-infinity"
# A partition whose newest record is this much older than the newest partition's is
# idle (no device keyed to it is sending), not lagging: it does not hold the data
# watermark back. Consumer lag delays every partition alike.
IDLE_PARTITION = timedelta(minutes=60)
# The commit-safe bound this far behind the clock means a transaction has been
# writing for that long: the transforms wait for it, so say so.
STALLED_BOUND = timedelta(minutes=5)


class TransformBusy(RuntimeError):
    """Another build holds the transform lock; the message is one line."""


@dataclass(frozen=True)
class BuildWindow:
    """What one build reads and the stamps it writes."""

    transformed_at: datetime
    previous_transformed_at: datetime | None
    safe_before: datetime
    snapshot_xmin: int
    oldest_writer_pid: int | None
    ingested_after: dict[str, datetime | None]
    ingested_through: dict[str, datetime | None]
    newest_record_at: dict[tuple[str, str, int], datetime] = field(default_factory=dict)
    full_refresh: bool = False

    @property
    def data_watermark_at(self) -> datetime | None:
        """The oldest newest-record time over the events' and health partitions.

        Partitions more than IDLE_PARTITION behind the newest one are left out: an
        idle partition (its devices silent) must not stop the clock of the rules that
        detect silence.
        """
        marks = [
            at for (source, _, _), at in self.newest_record_at.items() if source in DATA_SOURCES
        ]
        if not marks:
            return None
        newest = max(marks)
        return min(at for at in marks if at >= newest - IDLE_PARTITION)

    def to_json(self) -> dict[str, Any]:
        """Everything of the window, to resume a failed build with it (`from_json`)."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "transformed_at": iso(self.transformed_at),
            "previous_transformed_at": iso(self.previous_transformed_at),
            "safe_before": iso(self.safe_before),
            "snapshot_xmin": self.snapshot_xmin,
            "oldest_writer_pid": self.oldest_writer_pid,
            "ingested_after": {k: iso(v) for k, v in self.ingested_after.items()},
            "ingested_through": {k: iso(v) for k, v in self.ingested_through.items()},
            "newest_record_at": [
                [source, topic, partition, iso(at)]
                for (source, topic, partition), at in self.newest_record_at.items()
            ],
            "full_refresh": self.full_refresh,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildWindow:
        def at(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value)

        transformed_at, safe_before = at(data["transformed_at"]), at(data["safe_before"])
        assert transformed_at is not None and safe_before is not None
        return cls(
            transformed_at=transformed_at,
            previous_transformed_at=at(data["previous_transformed_at"]),
            safe_before=safe_before,
            snapshot_xmin=int(data["snapshot_xmin"]),
            oldest_writer_pid=data["oldest_writer_pid"],
            ingested_after={k: at(v) for k, v in data["ingested_after"].items()},
            ingested_through={k: at(v) for k, v in data["ingested_through"].items()},
            newest_record_at={
                (source, topic, int(partition)): at(value)  # type: ignore[misc]
                for source, topic, partition, value in data["newest_record_at"]
            },
            full_refresh=bool(data["full_refresh"]),
        )

    def dbt_vars(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str:
            return NEG_INF if value is None else value.isoformat()

        values: dict[str, Any] = {
            "transformed_at": self.transformed_at.isoformat(),
            "previous_transformed_at": iso(self.previous_transformed_at),
            "ingested_after": {name: iso(at) for name, at in self.ingested_after.items()},
            "ingested_through": {name: iso(at) for name, at in self.ingested_through.items()},
        }
        if self.data_watermark_at is not None:
            values["data_watermark_at"] = self.data_watermark_at.isoformat()
        return values


def _holder(cur: psycopg2.extensions.cursor) -> str:
    cur.execute(
        """
        select locks.pid, activity.backend_start
        from pg_locks as locks
        left join pg_stat_activity as activity on activity.pid = locks.pid
        where locks.locktype = 'advisory' and locks.granted
          and locks.database = (select oid from pg_database where datname = current_database())
          and locks.classid = 0 and locks.objid = %s and locks.objsubid = 1
        """,
        (LOCK_KEY,),
    )
    row = cur.fetchone()
    return f"pid {row[0]}" if row else "a session that just ended"


@contextmanager
def transform_lock(
    params: Mapping[str, Any], *, wait_seconds: float = 0.0
) -> Iterator[psycopg2.extensions.connection]:
    """Hold the database's transform lock; yields the connection that holds it.

    Waits up to wait_seconds for a running build, then raises TransformBusy.
    """
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    try:
        deadline = time.monotonic() + wait_seconds
        announced = False
        with conn.cursor() as cur:
            while True:
                cur.execute("select pg_try_advisory_lock(%s::bigint)", (LOCK_KEY,))
                if cur.fetchone()[0]:
                    break
                holder = _holder(cur)
                if time.monotonic() >= deadline:
                    raise TransformBusy(
                        f"another dbt build is running (transform lock held by {holder} on"
                        f" database {params.get('dbname')}); this one did not start - run it"
                        " again when that one finishes"
                    )
                if not announced:
                    logger.warning(
                        "waiting for the dbt build holding the transform lock (%s)", holder
                    )
                    announced = True
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        yield conn
    finally:
        conn.close()  # ends the session: the lock goes with it


def open_window(conn: psycopg2.extensions.connection, *, full_refresh: bool = False) -> BuildWindow:
    """The rows this build may read and its stamps (call while holding the lock)."""
    with conn.cursor() as cur:
        # The slices below are read by raw's BRIN indexes: summarise what landed
        # since the last build first, or they read every unsummarised range.
        cur.execute("select ops.summarize_raw_brin_ranges()")
        cur.execute(
            "select source_table, ingested_through, build_transformed_at"
            " from ops.transform_watermarks"
        )
        previous = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
        stamps = [stamp for _, stamp in previous.values()]
        previous_stamp = max(stamps) if stamps else None
        cur.execute("select clock_timestamp()")
        stamp = cur.fetchone()[0]
        if previous_stamp is not None and stamp <= previous_stamp:  # the clock stepped back
            stamp = previous_stamp + timedelta(microseconds=1)
        cur.execute(
            "select safe_before, snapshot_xmin::text::bigint, oldest_writer_pid"
            " from ops.transform_safe_bound()"
        )
        safe_before, snapshot_xmin, writer_pid = cur.fetchone()
        after: dict[str, datetime | None] = {}
        through: dict[str, datetime | None] = {}
        newest: dict[tuple[str, str, int], datetime] = {}
        if not full_refresh:
            cur.execute(
                "select source_table, kafka_topic, kafka_partition, newest_record_at"
                " from ops.transform_partition_watermarks"
            )
            names = {relation: name for name, relation in SOURCES.items()}
            newest = {
                (names[row[0]], row[1], row[2]): row[3] for row in cur.fetchall() if row[0] in names
            }
        for name, relation in SOURCES.items():
            lower = None if full_refresh else previous.get(relation, (None, None))[0]
            # Only the new slice: the BRIN index on _ingested_at serves the range.
            cur.execute(
                f"""
                select kafka_topic, kafka_partition, max(_ingested_at),
                    max(coalesce(kafka_timestamp, _ingested_at))
                from {relation}
                where _ingested_at > coalesce(%s, timestamptz '-infinity')
                  and _ingested_at < %s
                group by kafka_topic, kafka_partition
                """,
                (lower, safe_before),
            )
            rows = cur.fetchall()
            after[name] = lower
            through[name] = max([row[2] for row in rows], default=lower)
            for topic, partition, _, record_at in rows:
                key = (name, topic, partition)
                newest[key] = max(record_at, newest.get(key, record_at))
    if writer_pid is not None and stamp - safe_before > STALLED_BOUND:
        logger.warning(
            "transforms wait for pid %s: its transaction has been writing since %s, and no"
            " row landed after that start is read until it ends",
            writer_pid,
            safe_before,
        )
    elif writer_pid is not None:
        logger.info(
            "commit-safe bound %s held by the open transaction of pid %s", safe_before, writer_pid
        )
    return BuildWindow(
        transformed_at=stamp,
        previous_transformed_at=None if full_refresh else previous_stamp,
        safe_before=safe_before,
        snapshot_xmin=snapshot_xmin,
        oldest_writer_pid=writer_pid,
        ingested_after=after,
        ingested_through=through,
        newest_record_at=newest,
        full_refresh=full_refresh,
    )


def commit_window(
    conn: psycopg2.extensions.connection, window: BuildWindow, invocation_id: str | None
) -> None:
    """Move the watermarks past what the successful build read."""
    conn.autocommit = False
    try:
        with conn, conn.cursor() as cur:
            for name, relation in SOURCES.items():
                cur.execute(
                    """
                    insert into ops.transform_watermarks (source_table, ingested_through,
                        safe_before, snapshot_xmin, build_transformed_at, invocation_id)
                    values (%s, coalesce(%s, timestamptz '-infinity'), %s, %s::text::xid8, %s, %s)
                    on conflict (source_table) do update set
                        ingested_through = excluded.ingested_through,
                        safe_before = excluded.safe_before,
                        snapshot_xmin = excluded.snapshot_xmin,
                        build_transformed_at = excluded.build_transformed_at,
                        invocation_id = excluded.invocation_id,
                        updated_at = clock_timestamp()
                    """,
                    (
                        relation,
                        window.ingested_through[name],
                        window.safe_before,
                        str(window.snapshot_xmin),
                        window.transformed_at,
                        invocation_id,
                    ),
                )
            if window.full_refresh:
                cur.execute("delete from ops.transform_partition_watermarks")
            for (name, topic, partition), record_at in window.newest_record_at.items():
                cur.execute(
                    """
                    insert into ops.transform_partition_watermarks (source_table, kafka_topic,
                        kafka_partition, newest_record_at)
                    values (%s, %s, %s, %s)
                    on conflict (source_table, kafka_topic, kafka_partition) do update set
                        newest_record_at = greatest(
                            ops.transform_partition_watermarks.newest_record_at,
                            excluded.newest_record_at),
                        updated_at = clock_timestamp()
                    """,
                    (SOURCES[name], topic, partition, record_at),
                )
    finally:
        conn.autocommit = True


def last_committed_stamp(conn: psycopg2.extensions.connection) -> datetime | None:
    """The build stamp of the newest build that moved the watermarks (None: none yet)."""
    with conn.cursor() as cur:
        cur.execute("select max(build_transformed_at) from ops.transform_watermarks")
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None


def read_watermarks(conn: psycopg2.extensions.connection) -> dict[str, str]:
    """Source table -> how far its rows have been transformed (ISO timestamps)."""
    with conn, conn.cursor() as cur:
        cur.execute("select source_table, ingested_through from ops.transform_watermarks")
        return {str(table): through.isoformat() for table, through in cur.fetchall()}
