"""The pipeline's run record and alerts in `ops` (migration 0030).

One `ops.pipeline_runs` row per DAG run, upserted by every task, so a retried or
cleared task rewrites its part instead of adding rows. The functions take an open
psycopg2 connection and commit their own transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smart_access.ingestion import GateResult, PartitionLag, TableFreshness

__all__ = [
    "RunKey",
    "TransformOutcome",
    "fail_run",
    "finish_run",
    "record_freshness",
    "record_lag",
    "record_source_freshness",
    "record_transform",
    "start_run",
    "write_alert",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunKey:
    dag_id: str
    run_id: str
    interval_start: datetime
    interval_end: datetime
    run_started_at: datetime


@dataclass(frozen=True)
class TransformOutcome:
    """What one `dbt build` did, as the run record keeps it."""

    success: bool
    model_results: dict[str, dict[str, Any]]  # model name -> status, rows, schema
    rows_per_mart: dict[str, int]
    models_succeeded: int
    models_failed: int
    tests_passed: int
    tests_failed: int
    failed_nodes: list[str]
    duration_seconds: float
    error: str | None = None


def start_run(conn: Any, key: RunKey) -> None:
    """Create the run's row if it is missing; every task calls it first."""
    with conn, conn.cursor() as cur:
        cur.execute(
            """
            insert into ops.pipeline_runs
                (dag_id, run_id, data_interval_start, data_interval_end, started_at, state)
            values (%s, %s, %s, %s, %s, 'running')
            on conflict (dag_id, run_id) do nothing
            """,
            (key.dag_id, key.run_id, key.interval_start, key.interval_end, key.run_started_at),
        )


def _update(conn: Any, key: RunKey, assignments: dict[str, Any]) -> None:
    from psycopg2 import sql

    columns = sql.SQL(", ").join(
        sql.SQL("{} = %s").format(sql.Identifier(name)) for name in assignments
    )
    with conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "update ops.pipeline_runs set {}, updated_at = clock_timestamp() "
                "where dag_id = %s and run_id = %s"
            ).format(columns),
            [*assignments.values(), key.dag_id, key.run_id],
        )
        if cur.rowcount != 1:
            raise RuntimeError(f"no run record for {key.dag_id} / {key.run_id}")


def record_lag(
    conn: Any, key: RunKey, group: str, lags: Sequence[PartitionLag], gate: GateResult
) -> None:
    start_run(conn, key)
    with conn, conn.cursor() as cur:
        cur.execute(
            "delete from ops.pipeline_consumer_lag where dag_id = %s and run_id = %s",
            (key.dag_id, key.run_id),
        )
        cur.executemany(
            """
            insert into ops.pipeline_consumer_lag
                (dag_id, run_id, consumer_group, topic, partition, committed_offset,
                 end_offset, lag)
            values (%s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    key.dag_id,
                    key.run_id,
                    group,
                    i.topic,
                    i.partition,
                    i.committed_offset,
                    i.end_offset,
                    i.lag,
                )
                for i in lags
            ],
        )
    _update(
        conn,
        key,
        {
            "consumer_lag_total": sum(i.lag for i in lags),
            "consumer_lag_max_partition": max((i.lag for i in lags), default=0),
        },
    )
    _merge_gate(conn, key, gate)


def record_freshness(
    conn: Any, key: RunKey, items: Sequence[TableFreshness], gate: GateResult
) -> None:
    start_run(conn, key)
    with conn, conn.cursor() as cur:
        cur.execute(
            "delete from ops.pipeline_raw_freshness where dag_id = %s and run_id = %s",
            (key.dag_id, key.run_id),
        )
        cur.executemany(
            """
            insert into ops.pipeline_raw_freshness
                (dag_id, run_id, table_name, last_ingested_at, age_seconds,
                 rows_in_interval, is_gated)
            values (%s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    key.dag_id,
                    key.run_id,
                    i.table_name,
                    i.last_ingested_at,
                    i.age_seconds,
                    i.rows_in_interval,
                    i.is_gated,
                )
                for i in items
            ],
        )
    gated = [i for i in items if i.is_gated]
    ages = [i.age_seconds for i in gated if i.age_seconds is not None]
    _update(
        conn,
        key,
        {
            "raw_freshness_seconds": max(ages) if ages else None,
            "raw_rows_in_interval": sum(i.rows_in_interval for i in gated),
        },
    )
    _merge_gate(conn, key, gate)


def _merge_gate(conn: Any, key: RunKey, gate: GateResult) -> None:
    """The run's gate status is the worst of its checks (lag and freshness)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            """
            update ops.pipeline_runs set gate_status = case
                when gate_status = 'fail' or %(status)s = 'fail' then 'fail'
                when gate_status = 'warn' or %(status)s = 'warn' then 'warn'
                else 'ok' end,
                updated_at = clock_timestamp()
            where dag_id = %(dag_id)s and run_id = %(run_id)s
            """,
            {"status": gate.status, "dag_id": key.dag_id, "run_id": key.run_id},
        )


def record_source_freshness(conn: Any, key: RunKey, status: str) -> None:
    start_run(conn, key)
    _update(conn, key, {"source_freshness_status": status})


def record_transform(conn: Any, key: RunKey, outcome: TransformOutcome) -> None:
    start_run(conn, key)
    _update(
        conn,
        key,
        {
            "rows_per_mart": json.dumps(outcome.rows_per_mart),
            "model_results": json.dumps(outcome.model_results),
            "models_succeeded": outcome.models_succeeded,
            "models_failed": outcome.models_failed,
            "tests_passed": outcome.tests_passed,
            "tests_failed": outcome.tests_failed,
            "failed_nodes": list(outcome.failed_nodes),
            "transform_seconds": outcome.duration_seconds,
        },
    )


def finish_run(conn: Any, key: RunKey, finished_at: datetime) -> float:
    duration = (finished_at - key.run_started_at).total_seconds()
    _update(
        conn,
        key,
        {
            "state": "success",
            "finished_at": finished_at,
            "duration_seconds": duration,
            "failed_task": None,
            "error": None,
        },
    )
    return duration


def fail_run(conn: Any, key: RunKey, task_id: str, error: str, finished_at: datetime) -> None:
    start_run(conn, key)
    _update(
        conn,
        key,
        {
            "state": "failed",
            "failed_task": task_id,
            "error": error,
            "finished_at": finished_at,
            "duration_seconds": (finished_at - key.run_started_at).total_seconds(),
        },
    )


def write_alert(
    conn: Any,
    *,
    severity: str,
    dag_id: str,
    run_id: str | None,
    task_id: str | None,
    summary: str,
    detail: str | None = None,
    try_number: int | None = None,
    log_url: str | None = None,
    webhook_status: str | None = None,
) -> int:
    with conn, conn.cursor() as cur:
        cur.execute(
            """
            insert into ops.pipeline_alerts
                (severity, dag_id, run_id, task_id, try_number, summary, detail, log_url,
                 webhook_status)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            returning alert_id
            """,
            (
                severity,
                dag_id,
                run_id,
                task_id,
                try_number,
                summary,
                detail,
                log_url,
                webhook_status,
            ),
        )
        return int(cur.fetchone()[0])
