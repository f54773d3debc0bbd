"""The dashboard's plan guard: what each page query reads, at two lengths of history.

`seed_history(pg, name, days)` builds a warehouse the way the platform does: a small
fleet's raw rows for `days` days (at the same rate whatever the length: 45 minutes
of door activity a day and hourly health reports, a full last day), the real dbt
project's marts and indexes from them, and the ops records the pipeline writes
(ingest batches, DAG and dbt runs, freshness snapshots, lag measurements, dead
letters, notifications), also at a fixed rate per day.

`plan_reads(conn, sql, params)` runs one query under `EXPLAIN (ANALYZE, FORMAT JSON)`
and returns, per table (a partition counts as its partitioned table), the rows its
scans read and whether any of them was a sequential scan. Sequential scans are
disabled while it plans, so one in the plan means no index can serve the query.

A page query is history-bound when it reads the same rows from a table that grows
with history however long that history is: `reads_grow(small, large)` says when it
does not.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import sqlalchemy as sa

from stack.ephemeral import EphemeralPostgres
from tests.dbt_ledger import Ledger, build_fleet
from tests.integration.dbt_support import build, dbt_env, fresh_database

HISTORY_DAYS = (35, 105)  # both longer than the longest page range (30 days)
FLEET = 6
SCHEMAS = ("raw", "staging", "intermediate", "marts", "ops")
# A table grows with history when the long seed holds this many times its rows.
GROWS = 2.0
# Reads that grow more than this (relative and absolute) between the seeds grow with
# history; a bounded query reads about the same rows from either.
READS_RATIO = 1.5
READS_SLACK = 50

# The ops records, per day of history, at the rates a running platform writes them.
FILL_OPS = [
    """
    insert into ops.ingest_batches (consumer_group, consumer_id, started_at, committed_at,
        duration_ms, events_valid, events_invalid, health_valid, bytes, min_event_at,
        max_event_at, latency_p50_ms, latency_max_ms, consumer_lag)
    select 'smart-access-sink', format('consumer-%%s', n %% 2), at - interval '200 ms', at,
        200, 50, n %% 3, 20, 35000, at - interval '5 seconds', at - interval '1 second',
        300, 900, n %% 100
    from (select n, %(now)s - n * interval '5 minutes' as at
          from generate_series(1, 288 * %(days)s) as n) as b
    """,
    """
    insert into raw.dead_letters (kafka_topic, kafka_partition, kafka_offset, kafka_key,
        payload, error_kind, error_detail, _ingested_at)
    select 'smart-access.events', n %% 6, 1000000 + n, convert_to('dev-0001', 'UTF8'),
        convert_to('{"event_type": "teleport"}', 'UTF8'),
        (array['invalid_json','schema_violation','future_timestamp','too_large'])[1 + n %% 4],
        'event_type: not one of open, close, fail', %(now)s - n * interval '30 minutes'
    from generate_series(1, 48 * %(days)s) as n
    """,
    """
    insert into ops.pipeline_runs (dag_id, run_id, state, started_at, finished_at,
        duration_seconds, gate_status, consumer_lag_total, raw_freshness_seconds,
        models_succeeded, models_failed, tests_passed, tests_failed)
    select 'smart_access_streaming_pipeline', format('scheduled__%%s', n),
        case when n %% 40 = 0 then 'failed' else 'success' end,
        %(now)s - n * interval '15 minutes', %(now)s - n * interval '15 minutes'
            + interval '50 s', 50, 'ok', 100, 3, 14, 0, 20, (n %% 40 = 0)::int
    from generate_series(1, 96 * %(days)s) as n
    """,
    """
    insert into ops.pipeline_consumer_lag (dag_id, run_id, consumer_group, topic, partition,
        committed_offset, end_offset, lag, measured_at)
    select 'smart_access_streaming_pipeline', format('scheduled__%%s', n), 'smart-access-sink',
        'smart-access.events', p, 1000 * n, 1000 * n + p, p,
        %(now)s - n * interval '15 minutes'
    from generate_series(1, 96 * %(days)s) as n cross join generate_series(0, 5) as p
    """,
    """
    insert into ops.dbt_runs (invocation_id, command, started_at, finished_at,
        elapsed_seconds, return_code, success, tests_passed, tests_failed)
    select format('history-%%s', n), 'build', %(now)s - n * interval '15 minutes',
        %(now)s - n * interval '15 minutes' + interval '40 s', 40, 0, true, 20, 0
    from generate_series(1, 96 * %(days)s) as n
    """,
    """
    insert into ops.dbt_node_results (invocation_id, unique_id, resource_type, node_name,
        status, failures, message)
    select format('history-%%s', n), format('test.t%%s', t), 'test', format('test_%%s', t),
        case when n %% 40 = 0 and t = 1 then 'fail' else 'pass' end, 0, null
    from generate_series(1, 96 * %(days)s) as n cross join generate_series(1, 20) as t
    """,
    """
    insert into ops.source_freshness (invocation_id, unique_id, source_name, table_name,
        status, max_loaded_at, snapshotted_at, age_seconds)
    select format('history-%%s', n), format('source.smart_access.%%s', t), 'smart_access', t,
        'pass', %(now)s - n * interval '15 minutes' - interval '3 s',
        %(now)s - n * interval '15 minutes', 3
    from generate_series(1, 96 * %(days)s) as n
    cross join unnest(array['access_events', 'device_health', 'device_registry']) as t
    """,
    """
    insert into ops.consumer_starts (consumer_id, consumer_group, pid, started_at)
    select format('consumer-%%s', n %% 2), 'smart-access-sink', 1000 + n,
        %(now)s - n * interval '12 hours'
    from generate_series(1, 2 * %(days)s) as n
    """,
    """
    insert into ops.consumer_halts (consumer_group, topic, partition, reason, stored_offset,
        log_epoch, detected_at, resolved_at, resolution)
    select 'smart-access-sink', 'smart-access.events', n %% 6, 'offset_beyond_log_end', n, 0,
        %(now)s - n * interval '1 day',
        case when n > 1 then %(now)s - n * interval '1 day' + interval '1 hour' end,
        case when n > 1 then 'resumed' end
    from generate_series(1, %(days)s) as n
    """,
    """
    insert into ops.alert_notifications (alert_id, transition, alert_type, severity,
        device_id, household_id, started_at, status, attempts, first_seen_at, updated_at)
    select md5(n::text), 'opened', 'door_left_open', 'warning', 'dev-0001', 'hh-001',
        %(now)s - n * interval '72 minutes', 'sent', 1, %(now)s - n * interval '72 minutes',
        %(now)s - n * interval '72 minutes'
    from generate_series(1, 20 * %(days)s) as n
    """,
]
_MIGRATING = threading.Lock()


def seed_history(pg: EphemeralPostgres, name: str, days: int, target: Path) -> str:
    """A database `name` holding `days` days of history at a fixed rate (see above)."""
    with _MIGRATING:  # migrations alter the server's roles: one database at a time
        database = fresh_database(pg, name)
    now = datetime.now(UTC).replace(microsecond=0)
    ledger = Ledger(seed=16)
    fleet = build_fleet(ledger, now - timedelta(days=days + 1), count=FLEET)
    for device in fleet:
        for day in range(days, 1, -1):
            start = now - timedelta(days=day)
            ledger.door_activity(device, start, start + timedelta(minutes=45))
        ledger.door_activity(device, now - timedelta(hours=26), now - timedelta(minutes=1))
        ledger.health_reports(
            device, now - timedelta(days=days), now - timedelta(minutes=1), every_minutes=60
        )
    conn = psycopg2.connect(pg.dsn(database))
    try:
        ledger.flush(conn)
        build(dbt_env(pg, database), target, now.isoformat())
        with conn, conn.cursor() as cur:
            for statement in FILL_OPS:
                cur.execute(statement, {"now": now, "days": days})
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("vacuum analyze")
    finally:
        conn.close()
    return database


def table_rows(conn: psycopg2.extensions.connection) -> dict[str, int]:
    """Every table's rows (a partitioned table with its partitions; no partition alone)."""
    with conn.cursor() as cur:
        cur.execute(
            """
            select n.nspname || '.' || c.relname
            from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
            where c.relkind in ('r', 'p') and not c.relispartition
              and n.nspname = any(%s)
            """,
            (list(SCHEMAS),),
        )
        names = [row[0] for row in cur.fetchall()]
        counts = {}
        for name in names:
            cur.execute(f"select count(*) from {name}")
            counts[name] = cur.fetchone()[0]
    return counts


def growing_tables(small: Mapping[str, int], large: Mapping[str, int]) -> set[str]:
    """The tables whose rows grow with the seeded history."""
    return {
        name
        for name, rows in large.items()
        if rows >= GROWS * max(small.get(name, 0), 1) and rows > READS_SLACK
    }


@dataclass
class Reads:
    rows: int = 0
    sequential: bool = False


ROOTS_SQL = """
select cn.nspname || '.' || c.relname, rn.nspname || '.' || r.relname
from pg_inherits as i
join pg_class as c on c.oid = i.inhrelid
join pg_namespace as cn on cn.oid = c.relnamespace
join pg_class as r on r.oid = i.inhparent
join pg_namespace as rn on rn.oid = r.relnamespace
"""


def partition_parents(conn: sa.Connection) -> dict[str, str]:
    """Partition -> its partitioned table, schema-qualified."""
    return dict(conn.execute(sa.text(ROOTS_SQL)).fetchall())


def plan_reads(
    conn: sa.Connection, sql: str, params: Mapping[str, Any], parents: Mapping[str, str]
) -> dict[str, Reads]:
    """Rows read per table by one query's scans, from its executed plan (`parents`:
    partition_parents() of the database)."""
    conn.execute(sa.text("set local enable_seqscan = off"))
    conn.execute(sa.text("set local jit = off"))
    (plan,) = conn.execute(
        sa.text("explain (analyze, verbose, format json) " + sql), dict(params)
    ).scalar_one()
    reads: dict[str, Reads] = defaultdict(Reads)
    pending = [plan["Plan"]]
    while pending:
        node = pending.pop()
        pending.extend(node.get("Plans", []))
        relation = node.get("Relation Name")
        if relation is None:
            continue
        name = f"{node['Schema']}.{relation}"
        while name in parents:
            name = parents[name]
        per_loop = (
            node.get("Actual Rows", 0)
            + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0)
        )
        reads[name].rows += round(per_loop * node.get("Actual Loops", 0))
        reads[name].sequential |= node["Node Type"] == "Seq Scan"
    return dict(reads)


def reads_grow(small: int, large: int) -> bool:
    return large > READS_RATIO * small + READS_SLACK
