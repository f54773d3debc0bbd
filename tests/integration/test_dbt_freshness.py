"""`dbt source freshness` through run_source_freshness(): statuses and the ops record."""

from __future__ import annotations

import psycopg2

from stack.ephemeral import EphemeralPostgres
from tests.integration.dbt_support import dbt_env, fresh_database

from smart_access.dbt import run_source_freshness  # isort: skip  (path set by dbt_support)


def _land(conn, table: str, minutes_ago: int) -> None:
    with conn, conn.cursor() as cur:
        if table == "access_events":
            cur.execute(
                """
                insert into raw.access_events (kafka_topic, kafka_partition, kafka_offset,
                    schema_version, event_id, device_id, household_id, event_ts, event_type,
                    trigger_source, _ingested_at)
                select 'smart-access.events', 0, coalesce(max(kafka_offset) + 1, 0), 1,
                    gen_random_uuid(), 'dev-1', 'hh-1', now(), 'open', 'app',
                    now() - make_interval(mins => %s)
                from raw.access_events
                """,
                (minutes_ago,),
            )
        else:
            cur.execute(
                """
                insert into raw.device_health (kafka_topic, kafka_partition, kafka_offset,
                    schema_version, device_id, reported_at, battery_pct, signal_strength_dbm,
                    is_online, firmware_version, _ingested_at)
                select 'smart-access.health', 0, coalesce(max(kafka_offset) + 1, 0), 1,
                    'dev-1', now() - make_interval(mins => %s), 80, -70, true, '1.0',
                    now() - make_interval(mins => %s)
                from raw.device_health
                """,
                (minutes_ago, minutes_ago),
            )


def test_source_freshness_statuses_are_reported_and_recorded(pg: EphemeralPostgres, tmp_path):
    database = fresh_database(pg, "dbt_freshness")
    env = dbt_env(pg, database)
    conn = psycopg2.connect(pg.dsn(database))
    try:
        _land(conn, "access_events", 1)  # landed a minute ago: pass
        _land(conn, "device_health", 12)  # 12 minutes of silence: warn (> 5 min)
        result = run_source_freshness(env=env, target_path=tmp_path / "target")
        statuses = {s.table_name: s.status for s in result.sources}
        assert statuses == {"access_events": "pass", "device_health": "warn"}
        assert result.success and result.worst_status == "warn"
        ages = {s.table_name: s.age_seconds for s in result.sources}
        assert 30 < ages["access_events"] < 300 and 700 < ages["device_health"] < 900

        with conn, conn.cursor() as cur:
            cur.execute("delete from raw.access_events")
        _land(conn, "access_events", 45)  # 45 minutes: error (> 30 min)
        result = run_source_freshness(env=env, target_path=tmp_path / "target")
        assert {s.table_name: s.status for s in result.sources}["access_events"] == "error"
        assert not result.success

        with conn, conn.cursor() as cur:
            cur.execute(
                "select table_name, status, warn_after_seconds, error_after_seconds"
                " from ops.source_freshness where invocation_id = %s order by table_name",
                (result.invocation_id,),
            )
            assert cur.fetchall() == [
                ("access_events", "error", 300.0, 1800.0),
                ("device_health", "warn", 300.0, 1800.0),
            ]
    finally:
        conn.close()
