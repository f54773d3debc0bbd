"""The real DAG under `airflow dags test` against real PostgreSQL, Kafka and dbt.

The Airflow environment is the embedded stack's own (`stack.airflow.airflow_env`),
pointed at the session's PostgreSQL and Kafka; metadata lives in their `airflow`
database. dbt builds a small sample project (tests/pipeline_support.py) through
`SMART_ACCESS_DBT_PROJECT_DIR`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from smart_access.ingestion import evaluate_lag, measure_consumer_lag
from stack import airflow
from stack.config import StackConfig
from stack.ephemeral import EphemeralKafka, EphemeralPostgres, free_port, make_tempdir
from tests.pipeline_support import (
    FAILING_TEST,
    MART,
    insert_access_events,
    webhook_receiver,
    write_sample_dbt_project,
)

DAG_ID = "smart_access_streaming_pipeline"


@pytest.fixture(scope="module")
def stack_config(pg: EphemeralPostgres, kafka: EphemeralKafka) -> Iterator[StackConfig]:
    root = make_tempdir("smart-access-airflow-")
    config = StackConfig.from_env(
        {
            "SMART_ACCESS_STACK_DIR": str(root / "stack"),
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg.port),
            "PGUSER": "postgres",
            "PGPASSWORD": "postgres",
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "AIRFLOW_PORT": str(free_port()),
        }
    )
    config.log_dir.mkdir(parents=True)
    airflow.prepare(config, {})
    airflow.migrate_metadata(config, {})
    write_sample_dbt_project(root / "dbt")
    try:
        yield config
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def airflow_environment(config: StackConfig, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AIRFLOW", "KAFKA_"))}
    settings = {
        "SMART_ACCESS_DBT_PROJECT_DIR": str(config.root.parent / "dbt"),
        "SMART_ACCESS_FRESHNESS_WARN_SECONDS": "600",
        "SMART_ACCESS_FRESHNESS_FAIL_SECONDS": "3600",
        # Airflow 3.3.2's `dags test` ends a successful run of a DAG with a deadline by
        # looking the deadline up by an id it does not have; the scheduler is fine
        # (tests/e2e/test_airflow.py sees the alert fire there)
        "SMART_ACCESS_RUN_DEADLINE_MINUTES": "0",
        **extra,
    }
    return {**base, **airflow.airflow_env(config, settings)}


def dags_test(config: StackConfig, logical_date: datetime, **extra: str) -> str:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "airflow"),
            "dags",
            "test",
            DAG_ID,
            logical_date.isoformat(),
        ],
        env=airflow_environment(config, **extra),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return result.stdout + result.stderr


def run_record(pg: EphemeralPostgres, interval_start: datetime, output: str) -> dict[str, Any]:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "select * from ops.pipeline_runs where dag_id = %s and data_interval_start = %s",
            (DAG_ID, interval_start),
        )
        row = cur.fetchone()
        if row is None:
            cur.execute("select run_id, data_interval_start from ops.pipeline_runs")
            pytest.fail(f"no run record for {interval_start}: {cur.fetchall()}\n{output[-6000:]}")
        return dict(zip([c.name for c in cur.description], row, strict=True))


def dag_run_state(pg: EphemeralPostgres, run_id: str) -> str:
    with psycopg2.connect(pg.dsn("airflow")) as conn, conn.cursor() as cur:
        cur.execute("select state from dag_run where dag_id = %s and run_id = %s", (DAG_ID, run_id))
        return str(cur.fetchone()[0])


def interval_starts() -> tuple[datetime, datetime]:
    """Two past, consecutive 15-minute intervals."""
    now = datetime.now(UTC)
    aligned = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    return aligned - timedelta(minutes=45), aligned - timedelta(minutes=30)


def test_lag_gate_reads_real_consumer_group_lag(
    kafka: EphemeralKafka, stack_config: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from smart_access.pipeline import kafka_admin, kafka_offsets_reader
    from smart_access.settings import PipelineSettings

    topic, group = f"it-lag-{uuid.uuid4().hex[:8]}", f"it-group-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(kafka.client_config())
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result()
    producer = Producer(kafka.client_config())
    for partition, count in ((0, 10), (1, 5)):
        for i in range(count):
            producer.produce(topic, value=b"x", key=str(i), partition=partition)
    assert producer.flush(30) == 0
    consumer = Consumer({**kafka.client_config(), "group.id": group})
    try:
        # A fresh broker creates __consumer_offsets on the first commit: retry until
        # the group coordinator is there.
        deadline = time.monotonic() + 60
        while True:
            try:
                consumer.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()

    # Through the Kafka provider's hook and the stack's AIRFLOW_CONN_* variable.
    for key, value in airflow_environment(stack_config).items():
        if key.startswith("AIRFLOW"):
            monkeypatch.setenv(key, value)
    settings = PipelineSettings()
    reader = kafka_offsets_reader(settings, group)
    try:
        lags = measure_consumer_lag(kafka_admin(settings), reader, [topic])
    finally:
        reader.close()
    by_partition = {item.partition: item for item in lags}
    assert (by_partition[0].committed_offset, by_partition[0].end_offset) == (4, 10)
    assert by_partition[0].lag == 6
    assert (by_partition[1].committed_offset, by_partition[1].lag) == (None, 5)
    assert evaluate_lag(lags, warn_at=100, fail_at=1000).status == "warn"  # p1 never committed
    assert evaluate_lag(lags, warn_at=5, fail_at=11).status == "fail"


def test_dag_run_builds_marts_and_writes_run_record(
    pg: EphemeralPostgres, stack_config: StackConfig
) -> None:
    start, _ = interval_starts()
    with closing(psycopg2.connect(pg.dsn())) as conn:
        insert_access_events(
            conn,
            [("open", start + timedelta(minutes=m)) for m in (2, 5, 9)]
            + [("close", start + timedelta(minutes=14))],
        )
    # A manual run's interval ends at its logical date.
    output = dags_test(stack_config, start + timedelta(minutes=15))

    record = run_record(pg, start, output)
    assert record["state"] == "success", output[-4000:]
    assert dag_run_state(pg, record["run_id"]) == "success"
    assert record["data_interval_end"] == start + timedelta(minutes=15)
    assert record["rows_per_mart"] == {MART: 2}
    assert (record["tests_passed"], record["tests_failed"]) == (3, 0)
    assert record["failed_nodes"] == []
    assert record["raw_rows_in_interval"] == 4
    assert record["raw_freshness_seconds"] == pytest.approx(60, abs=1)
    assert record["source_freshness_status"] == "pass"
    assert record["duration_seconds"] > 0 and record["transform_seconds"] > 0
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"select event_type, event_count from marts.{MART} order by 1")
        built = cur.fetchall()
        cur.execute("select event_type, count(*) from raw.access_events group by 1 order by 1")
        assert built == cur.fetchall()
        assert ("close", 1) in built
        cur.execute(
            "select consumer_group, count(*) from ops.pipeline_consumer_lag "
            "where run_id = %s group by 1",
            (record["run_id"],),
        )
        assert cur.fetchall() == [("smart-access-sink", 15)]  # 6 + 6 + 3 partitions
        cur.execute(
            "select table_name, rows_in_interval from ops.pipeline_raw_freshness "
            "where run_id = %s order by 1",
            (record["run_id"],),
        )
        assert dict(cur.fetchall())["raw.access_events"] == 4


def test_failing_dbt_test_fails_the_run_and_writes_the_alert(
    pg: EphemeralPostgres, stack_config: StackConfig
) -> None:
    _, start = interval_starts()
    with closing(psycopg2.connect(pg.dsn())) as conn:
        insert_access_events(conn, [("fail", start + timedelta(minutes=10))])
    with webhook_receiver() as (url, received):
        output = dags_test(
            stack_config, start + timedelta(minutes=15), SMART_ACCESS_ALERT_WEBHOOK_URL=url
        )

    record = run_record(pg, start, output)
    assert record["state"] == "failed", output[-4000:]
    assert dag_run_state(pg, record["run_id"]) == "failed"
    assert record["failed_task"] == "build_models"
    assert FAILING_TEST in record["failed_nodes"]
    assert FAILING_TEST in record["error"]
    assert record["tests_failed"] == 1
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "select severity, task_id, summary, webhook_status from ops.pipeline_alerts "
            "where run_id = %s and severity = 'error'",
            (record["run_id"],),
        )
        alerts = cur.fetchall()
    assert len(alerts) == 1, alerts
    _, task_id, summary, webhook_status = alerts[0]
    assert task_id == "build_models" and FAILING_TEST in summary
    assert webhook_status == "sent: HTTP 200"
    assert [r["task_id"] for r in received] == ["build_models"]
    assert received[0]["run_id"] == record["run_id"]
