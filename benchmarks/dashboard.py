"""Benchmark: the dashboard's page queries on a warehouse of N access events.

An ephemeral PostgreSQL gets its marts from the real dbt project (`dbt build` over a
household's hour: the columns, keys, indexes and day partitions the project gives
them), emptied and then filled in bulk with `generate_series`: N access events
(default 5 M; the issue's figure is 50 M, `--events 50000000`, about 35 min on 2
cores) from 10,000 devices over 30 days ending now, the 15-minute, fleet, hourly and
daily rollups built from them with SQL, device status and hourly health, alerts, and
the ops records the pages read (ingest batches, dead letters, DAG and dbt runs, test
results, freshness snapshots, lag measurements, consumer starts and halts,
notifications). PostgreSQL is restarted, then every page's queries run as the
read-only analyst role, exactly as the pages send them (same SQL, same default
parameters, no Streamlit cache): one cold run (empty shared buffers; the OS page
cache stays warm), then the median of `--repeat` warm runs. Ceilings: 1 s warm and
2 s cold for all of a page's queries. A page over them gets its slowest query's
executed plan printed, and the exit status is 1.

The marts are generated directly rather than by `dbt build` from raw rows: the
dashboard never reads raw access events, and generating is much faster than a build.

    .venv/bin/python benchmarks/dashboard.py [--events 50000000] [--repeat 5]

Writes benchmarks/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analytics import queries as q  # noqa: E402
from stack.ephemeral import EphemeralPostgres  # noqa: E402
from tests.dbt_ledger import Ledger, build_fleet  # noqa: E402
from tests.integration.dbt_support import dbt_env, run_dbt_build  # noqa: E402
from tests.plan_guard import FILL_OPS  # noqa: E402

logger = logging.getLogger("benchmarks.dashboard")
CEILING_SECONDS = 1.0  # a page's queries, warm (median of the repeats)
COLD_CEILING_SECONDS = 2.0  # the same, the first time after the build
DAYS = 30


def _activity(lookback: str, **filters: Any) -> list[tuple[q.Query, dict[str, Any]]]:
    """The Activity page's queries for a time range, as the page picks them."""
    daily = lookback == "30 days"
    params = {
        "range_unit": "day" if daily else "hour",
        "lookback": lookback,
        "grain": "1 day" if daily else "1 hour",
        "regions": [],
        "device_types": [],
        "models": [],
        "household_id": "",
        **filters,
    }
    by_type = q.ACTIVITY_BY_TYPE_DAILY if daily else q.ACTIVITY_BY_TYPE
    by_source = q.ACTIVITY_BY_SOURCE_DAILY if daily else q.ACTIVITY_BY_SOURCE
    return [(q.FILTER_OPTIONS, {}), (by_type, params), (by_source, params)]


# The queries each page runs on first load, with the parameters the page sends.
PAGES: dict[str, list[tuple[q.Query, dict[str, Any]]]] = {
    "overview": [
        (q.EVENT_KPIS, {}),
        (q.DEVICE_KPIS, {"low_battery_pct": q.LOW_BATTERY_PCT}),
        (q.ALERT_KPIS, {}),
        (q.EVENTS_PER_15MIN, {"lookback": "6 hours"}),
    ],
    "activity": _activity("24 hours"),
    "activity (30 days, one region)": _activity("30 days", regions=["north"]),
    "activity (one household, 7 days)": _activity("7 days", household_id="hh-42"),
    "devices": [
        (q.HEALTH_STATES, {}),
        (
            q.DEVICE_STATUS,
            {
                "search": "",
                "health_states": [],
                "sort_by": "device_id",
                "descending": False,
                "row_limit": 1000,
            },
        ),
        (q.BATTERY_DISTRIBUTION, {}),
        (q.SIGNAL_DISTRIBUTION, {}),
        (q.OFFLINE_DEVICES, {}),
        (q.FIRMWARE_VERSIONS, {}),
    ],
    "device": [
        (q.DEVICE_IDS, {}),
        (q.DEVICE_HISTORY, {"device_id": "dev-42"}),
        (q.DEVICE_HEALTH, {"device_id": "dev-42"}),
        (q.DEVICE_EVENTS, {"device_id": "dev-42"}),
    ],
    "alerts": [
        (q.ALERT_FILTER_OPTIONS, {}),
        (q.OPEN_ALERTS_BY_TYPE, {"alert_types": [], "severities": []}),
        (q.RECENT_ALERTS, {"alert_types": [], "severities": [], "lookback": "7 days"}),
        (q.ALERT_DURATIONS, {"alert_types": [], "severities": [], "lookback": "7 days"}),
        (q.ALERT_NOTIFICATIONS, {"lookback": "7 days"}),
    ],
    "pipeline health": [
        (q.RAW_FRESHNESS, {}),
        (q.CONSUMER_HALTS, {}),
        (q.CONSUMER_STARTS, {}),
        (q.SOURCE_FRESHNESS, {}),
        (q.INGEST_THROUGHPUT, {"lookback": "6 hours"}),
        (q.CONSUMER_LAG, {}),
        (q.PARTITION_LAG, {}),
        (q.CONSUMER_OFFSETS, {}),
        (q.PIPELINE_RUNS, {}),
        (q.FAILED_DBT_TESTS, {}),
        (q.DEAD_LETTERS_BY_REASON, {"lookback": "6 hours"}),
        (q.DEAD_LETTER_SAMPLES, {"lookback": "6 hours", "error_kind": "", "row_limit": 20}),
    ],
    # the :8090 inspector's own queries (its Kafka reads are in benchmarks/kafka_ui.py)
    "inspector": [
        (
            q.RECORD_LANDING,
            {
                "topic": "smart-access.events",
                "partitions": [p % 6 for p in range(500)],
                "offsets": list(range(500)),
            },
        ),
        (q.GROUP_LAG_HISTORY, {"consumer_group": "smart-access-sink", "lookback": "1 hour"}),
        (q.DEAD_LETTERS_OVER_TIME, {"lookback": "7 days"}),
    ],
}

# The rollups' per-trigger-source columns, as the dbt macro trigger_sources gives them.
SOURCE_COLUMNS = ", ".join(f"{source}_trigger_count" for source in q.TRIGGER_SOURCES)
COUNT_SOURCES = ", ".join(
    f"count(*) filter (where trigger_source = '{source}')" for source in q.TRIGGER_SOURCES
)
SUM_SOURCES = ", ".join(f"sum({source}_trigger_count)" for source in q.TRIGGER_SOURCES)

# Bulk generation, as the transformer (marts) and the admin (raw, ops). %(name)s are
# psycopg2 parameters; every row's time is spread over the DAYS ending now.
FILL_MARTS = [
    """
    insert into marts.dim_device (device_version_id, device_id, household_id, device_type,
        model, firmware_version, device_status, region, timezone, installed_at,
        valid_from_at, valid_to_at, is_current)
    select format('v-%%s-%%s', d, v), format('dev-%%s', d), format('hh-%%s', d / 3),
        (array['garage_door','gate','smart_lock'])[1 + d %% 3], format('M-%%s', d %% 7),
        case when v = 2 then '2.1.0' else '1.9.0' end,
        case when d %% 97 = 0 then 'retired' else 'active' end,
        (array['north','south','east','west'])[1 + (d / 3) %% 4], 'Europe/Berlin',
        now() - interval '400 days',
        case when v = 2 then now() - interval '10 days' else now() - interval '400 days' end,
        case when v = 1 then now() - interval '10 days' end, v = 2
    from generate_series(0, %(devices)s - 1) as d
    cross join generate_series(1, 2) as v
    where v = 2 or d %% 10 = 0
    """,
    """
    insert into marts.fct_access_events (event_id, device_id, household_id, event_at,
        event_type, trigger_source, failure_reason, device_version_id, device_type, model,
        firmware_version, region, kafka_topic, kafka_partition, kafka_offset, ingested_at,
        transformed_at)
    select gen_random_uuid(), format('dev-%%s', d), format('hh-%%s', d / 3), at, kind,
        (array['app','keypad','remote','schedule','voice','auto_close'])[1 + n %% 6],
        case when kind = 'fail' then 'obstruction' end, format('v-%%s-2', d),
        (array['garage_door','gate','smart_lock'])[1 + d %% 3], format('M-%%s', d %% 7),
        '2.1.0', (array['north','south','east','west'])[1 + (d / 3) %% 4],
        'smart-access.events', d %% 6, n, at + interval '1 second', now()
    from (
        select n, ((n::bigint * 7919) %% %(devices)s)::int as d,
            now() - %(days)s * interval '1 day' * (1 - n::float8 / %(events)s) as at,
            case when n %% 23 = 0 then 'fail' when n %% 2 = 0 then 'open' else 'close' end
                as kind
        from generate_series(1, %(events)s) as n
    ) as generated
    """,
    """
    insert into marts.agg_access_15min (device_id, window_start_at, window_end_at,
        event_count, open_count, close_count, fail_count, failure_rate)
    select device_id, w, w + interval '15 minutes', count(*),
        count(*) filter (where event_type = 'open'), count(*) filter (where event_type = 'close'),
        count(*) filter (where event_type = 'fail'),
        round(count(*) filter (where event_type = 'fail')::numeric / count(*), 6)
    from (
        select device_id, event_type,
            date_bin(interval '15 minutes', event_at, timestamptz '2000-01-01') as w
        from marts.fct_access_events
    ) as e
    group by device_id, w
    """,
    f"""
    insert into marts.agg_access_fleet_15min (window_start_at, region, device_type, model,
        event_count, open_count, close_count, fail_count, {SOURCE_COLUMNS}, transformed_at)
    select date_bin(interval '15 minutes', event_at, timestamptz '2000-01-01'),
        coalesce(region, 'unknown'), coalesce(device_type, 'unknown'),
        coalesce(model, 'unknown'), count(*),
        count(*) filter (where event_type = 'open'), count(*) filter (where event_type = 'close'),
        count(*) filter (where event_type = 'fail'), {COUNT_SOURCES}, now()
    from marts.fct_access_events
    group by 1, 2, 3, 4
    """,
    f"""
    insert into marts.agg_access_hourly (hour_start_at, household_id, region, device_type,
        model, event_count, open_count, close_count, fail_count, failure_rate,
        {SOURCE_COLUMNS})
    select date_trunc('hour', event_at), household_id, coalesce(region, 'unknown'),
        coalesce(device_type, 'unknown'), coalesce(model, 'unknown'), count(*),
        count(*) filter (where event_type = 'open'), count(*) filter (where event_type = 'close'),
        count(*) filter (where event_type = 'fail'),
        round(count(*) filter (where event_type = 'fail')::numeric / count(*), 6),
        {COUNT_SOURCES}
    from marts.fct_access_events
    group by 1, 2, 3, 4, 5
    """,
    f"""
    insert into marts.agg_access_daily (day_start_at, household_id, region, device_type,
        model, event_count, open_count, close_count, fail_count, failure_rate,
        {SOURCE_COLUMNS})
    select date_trunc('day', hour_start_at), household_id, region, device_type, model,
        sum(event_count), sum(open_count), sum(close_count), sum(fail_count),
        round(sum(fail_count) / sum(event_count), 6),
        {SUM_SOURCES}
    from marts.agg_access_hourly
    group by 1, 2, 3, 4, 5
    """,
    """
    insert into marts.device_status_current (device_id, household_id, device_type, model,
        device_status, region, firmware_version, last_health_report_at, last_event_at,
        battery_pct, signal_strength_dbm, is_online, failure_rate_24h, health_state)
    select device_id, household_id, device_type, model, device_status, region,
        firmware_version, now() - (d %% 30) * interval '1 minute', now(),
        (d * 37) %% 101, -40 - (d * 13) %% 80, d %% 11 <> 0, 0.04,
        case when d %% 11 = 0 then 'critical' when (d * 37) %% 101 < 15 then 'warning'
             else 'ok' end
    from (select *, split_part(device_id, '-', 2)::int as d from marts.dim_device
          where is_current) as devices
    """,
    """
    insert into marts.fct_device_health_hourly (device_id, hour_start_at, report_count,
        battery_min_pct, battery_avg_pct, signal_avg_dbm, online_ratio)
    select format('dev-%%s', d), date_trunc('hour', now()) - h * interval '1 hour', 60,
        (d * 37 + h) %% 101, (d * 37 + h) %% 101, -40 - (d * 13) %% 80,
        case when (d + h) %% 11 = 0 then 0.5 else 1 end
    from generate_series(0, %(devices)s - 1) as d
    cross join generate_series(1, 24 * %(days)s) as h
    """,
    """
    insert into marts.fct_alerts (alert_id, alert_type, device_id, household_id, started_at,
        ended_at, is_open, severity)
    select md5(n::text),
        (array['repeated_failures','door_left_open','low_battery','offline'])[1 + n %% 4],
        format('dev-%%s', n %% %(devices)s), format('hh-%%s', (n %% %(devices)s) / 3),
        now() - %(days)s * interval '1 day' * (1 - n::float8 / 100000),
        case when n %% 50 <> 0 then now() - %(days)s * interval '1 day'
            * (1 - n::float8 / 100000) + (n %% 300) * interval '1 minute' end,
        n %% 50 = 0, case when n %% 3 = 0 then 'critical' else 'warning' end
    from generate_series(1, 100000) as n
    """,
]

FILL_ADMIN = [
    """
    insert into ops.ingest_batches (consumer_group, consumer_id, started_at, committed_at,
        duration_ms, events_valid, events_invalid, health_valid, devices_valid, bytes,
        max_event_at, latency_p50_ms, latency_max_ms, consumer_lag)
    select 'smart-access-sink', format('consumer-%%s', n %% 2), at - interval '200 ms', at,
        200, 500, n %% 3, 200, 0, 350000, at - interval '1 second', 300, 900, n %% 1000
    from (
        select n, now() - %(days)s * interval '1 day' * (1 - n::float8 / 500000) as at
        from generate_series(1, 500000) as n
    ) as b
    """,
    """
    insert into raw.dead_letters (kafka_topic, kafka_partition, kafka_offset, kafka_key,
        payload, error_kind, error_detail, _ingested_at)
    select 'smart-access.events', n %% 6, n, convert_to(format('dev-%%s', n), 'UTF8'),
        convert_to('{"event_type": "teleport"}', 'UTF8'),
        (array['invalid_json','schema_violation','future_timestamp','too_large'])[1 + n %% 4],
        'event_type: not one of open, close, fail',
        now() - %(days)s * interval '1 day' * (1 - n::float8 / 200000)
    from generate_series(1, 200000) as n
    """,
    """
    insert into ops.pipeline_runs (dag_id, run_id, state, started_at, finished_at,
        duration_seconds, gate_status, consumer_lag_total, raw_freshness_seconds,
        models_succeeded, models_failed, tests_passed, tests_failed)
    select 'smart_access_streaming_pipeline', format('scheduled__%%s', n),
        case when n %% 40 = 0 then 'failed' else 'success' end,
        now() - n * interval '15 minutes', now() - n * interval '15 minutes' + interval '50 s',
        50, 'ok', 100, 3, 14, 0, 60, (n %% 40 = 0)::int
    from generate_series(1, 96 * %(days)s) as n
    """,
    """
    insert into ops.dbt_runs (invocation_id, command, started_at, finished_at,
        elapsed_seconds, return_code, success, tests_passed, tests_failed)
    select format('inv-%%s', n), 'build', now() - n * interval '15 minutes',
        now() - n * interval '15 minutes' + interval '40 s', 40, 0, true, 60, 0
    from generate_series(1, 96 * %(days)s) as n
    """,
    """
    insert into ops.dbt_node_results (invocation_id, unique_id, resource_type, node_name,
        status, failures, message)
    select format('inv-%%s', n), format('test.t%%s', t), 'test', format('test_%%s', t),
        case when n %% 40 = 0 and t = 1 then 'fail' else 'pass' end, 0, null
    from generate_series(1, 96 * %(days)s) as n
    cross join generate_series(1, 60) as t
    """,
]

_FILLED = {statement.split("insert into ")[1].split()[0] for statement in FILL_ADMIN}
# The other ops records the pages read, at the plan guard's rates per day.
_OTHER_OPS = [s for s in FILL_OPS if s.split("insert into ")[1].split()[0] not in _FILLED]


def _dbt_marts(server: EphemeralPostgres, work: Path) -> None:
    """The marts exactly as the dbt project builds them (columns, keys, indexes, the
    fact's day partitions): `dbt build` over one device's hour, then emptied."""
    now = datetime.now(UTC).replace(microsecond=0)
    ledger = Ledger(seed=16)
    for device in build_fleet(ledger, now - timedelta(days=1), count=1):
        ledger.door_activity(device, now - timedelta(hours=1), now - timedelta(minutes=1))
        ledger.health_reports(device, now - timedelta(hours=1), now - timedelta(minutes=1))
    conn = psycopg2.connect(server.dsn())
    try:
        ledger.flush(conn)
    finally:
        conn.close()
    result = run_dbt_build(
        vars={"reference_at": now.isoformat()},
        env={**os.environ, **dbt_env(server, "smart_access")},
        target_path=work / "target",
    )
    if not result.success:
        raise SystemExit("dbt build of the marts failed: " + ", ".join(result.failed_nodes))


def _empty_marts(cur: psycopg2.extensions.cursor, days: int) -> list[str]:
    """Empty the marts, give the fact a partition for each day, and drop the marts'
    keys and indexes for the bulk load; returns their DDL to rebuild after.

    Same indexes at query time, built once in bulk instead of row by row. Keys come
    back as unique indexes, which the planner uses the same way. A partitioned
    table's index is rebuilt on the table, which builds it on every partition.
    """
    cur.execute(
        "select n.nspname || '.' || c.relname from pg_class as c"
        " join pg_namespace as n on n.oid = c.relnamespace"
        " where n.nspname = 'marts' and c.relkind in ('r', 'p') and not c.relispartition"
    )
    for (table,) in cur.fetchall():
        cur.execute(f"truncate {table}")
    cur.execute(
        """
        select format('create table if not exists marts.%%I partition of'
                      ' marts.fct_access_events for values from (%%L) to (%%L)',
                      'fct_access_events_p' || to_char(day, 'YYYYMMDD'),
                      day at time zone 'UTC', (day + interval '1 day') at time zone 'UTC')
        from generate_series(
            date_trunc('day', now() at time zone 'UTC') - %(days)s * interval '1 day',
            date_trunc('day', now() at time zone 'UTC') + interval '2 days',
            interval '1 day') as day
        """,
        {"days": days + 1},
    )
    for (statement,) in cur.fetchall():
        cur.execute(statement)
    cur.execute(
        """
        select c.conname, t.oid::regclass::text
        from pg_constraint as c
        join pg_class as t on t.oid = c.conrelid
        join pg_namespace as n on n.oid = t.relnamespace
        where n.nspname = 'marts' and c.contype in ('p', 'u') and not t.relispartition
        """
    )
    constraints = cur.fetchall()
    cur.execute(
        """
        select i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        from pg_index as i
        join pg_class as t on t.oid = i.indrelid
        join pg_namespace as n on n.oid = t.relnamespace
        where n.nspname = 'marts' and not t.relispartition
        """
    )
    indexes = cur.fetchall()
    for name, table in constraints:
        cur.execute(f'alter table {table} drop constraint "{name}"')
    for index, _ in indexes:  # a key's index went with its constraint
        cur.execute(f"drop index if exists {index}")
    return [definition.replace(" ON ONLY ", " ON ") for _, definition in indexes]


def _build(server: EphemeralPostgres, events: int, devices: int, work: Path) -> dict[str, float]:
    params = {"events": events, "devices": devices, "days": DAYS}
    timings: dict[str, float] = {}
    start = time.monotonic()
    _dbt_marts(server, work)
    timings["dbt build of the schema"] = round(time.monotonic() - start, 1)
    conn = psycopg2.connect(server.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("set role smart_access_transformer")
            cur.execute("set maintenance_work_mem = '512MB'; set work_mem = '256MB'")
            indexes = _empty_marts(cur, DAYS)
            for statement in FILL_MARTS:
                table = statement.split("insert into ")[1].split()[0]
                start = time.monotonic()
                cur.execute(statement, params)
                timings[table] = round(time.monotonic() - start, 1)
                logger.info("filled %s in %.1fs", table, timings[table])
            start = time.monotonic()
            for definition in indexes:
                cur.execute(definition)
            timings["mart indexes"] = round(time.monotonic() - start, 1)
            logger.info("built %d mart indexes in %.1fs", len(indexes), timings["mart indexes"])
            cur.execute("reset role")
            for statement in FILL_ADMIN + _OTHER_OPS:
                table = statement.split("insert into ")[1].split()[0]
                start = time.monotonic()
                cur.execute(statement, {**params, "now": datetime.now(UTC)})
                timings[table] = round(time.monotonic() - start, 1)
                logger.info("filled %s in %.1fs", table, timings[table])
            cur.execute("vacuum analyze")
    finally:
        conn.close()
    return timings


def _time_pages(engine: sa.Engine, repeat: int, pages: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for page in pages:
        rows = []
        for query, params in PAGES[page]:
            runs = []
            for _ in range(repeat + 1):
                start = time.perf_counter()
                with engine.connect() as conn:
                    fetched = conn.execute(sa.text(query.sql), params).fetchall()
                runs.append(time.perf_counter() - start)
            rows.append(
                {
                    "query": query.name,
                    "cold_s": round(runs[0], 4),
                    "warm_median_s": round(statistics.median(runs[1:]), 4),
                    "rows": len(fetched),
                }
            )
        warm = sum(r["warm_median_s"] for r in rows)
        cold = sum(r["cold_s"] for r in rows)
        results[page] = {
            "queries": rows,
            "page_warm_s": round(warm, 3),
            "page_cold_s": round(cold, 3),
            "ceiling_s": CEILING_SECONDS,
            "cold_ceiling_s": COLD_CEILING_SECONDS,
            "within_ceiling": warm <= CEILING_SECONDS and cold <= COLD_CEILING_SECONDS,
        }
    return results


def _print(results: dict[str, Any]) -> None:
    for page, result in results.items():
        mark = "ok  " if result["within_ceiling"] else "OVER"
        print(
            f"{mark} {page:34s} warm {result['page_warm_s']:7.3f} s   cold "
            f"{result['page_cold_s']:7.3f} s   (ceilings {result['ceiling_s']:.1f} s warm,"
            f" {result['cold_ceiling_s']:.1f} s cold)"
        )
        for row in result["queries"]:
            print(f"       {row['query']:28s} {row['warm_median_s']:8.4f} s  {row['rows']:>7} rows")


def analyst_engine(server: EphemeralPostgres, database: str = "smart_access") -> sa.Engine:
    """The dashboard's connection: the read-only analyst role."""
    url = sa.engine.URL.create(
        "postgresql+psycopg2",
        username="smart_access_analyst",
        password=server.role_passwords["smart_access_analyst"],
        host="127.0.0.1",
        port=server.port,
        database=database,
    )
    return sa.create_engine(url, pool_pre_ping=True)


def _explain(server: EphemeralPostgres, page: str, result: dict[str, Any]) -> None:
    """Print the executed plan of the slowest query of a page over its ceiling."""
    slowest = max(result["queries"], key=lambda row: row["cold_s"] + row["warm_median_s"])
    query, params = next((qy, pa) for qy, pa in PAGES[page] if qy.name == slowest["query"])
    engine = analyst_engine(server)
    try:
        with engine.connect() as conn:
            plan = conn.execute(
                sa.text("explain (analyze, buffers) " + query.sql), params
            ).scalars()
            print(f"\n{page}: plan of {query.name}, its slowest query")
            for line in plan:
                print(f"    {line}")
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events", type=int, default=5_000_000, help="access events (the issue: 20000000)"
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="warm runs per query")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/dashboard.json")
    args = parser.parse_args(argv)
    if args.events < 1000 or args.devices < 100:
        parser.error("--events must be at least 1000 and --devices at least 100")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    server = EphemeralPostgres.create()
    try:
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as work:
            fill = _build(server, args.events, args.devices, Path(work))
        build_s = time.monotonic() - start
        # Cold: the first run after a restart (empty shared buffers; the operating
        # system's page cache stays as the build left it).
        server.restart()
        engine = analyst_engine(server)
        results = _time_pages(engine, args.repeat, list(PAGES))
        print(f"\ndashboard page queries, {args.events:,} access events, {args.devices:,} devices")
        _print(results)
        over = [page for page, result in results.items() if not result["within_ceiling"]]
        for page in over:
            _explain(server, page, results[page])
        engine.dispose()
        with psycopg2.connect(server.dsn()) as conn, conn.cursor() as cur:
            cur.execute(
                "select relname, n_live_tup from pg_stat_user_tables "
                "where schemaname = 'marts' order by 1"
            )
            sizes = dict(cur.fetchall())
    finally:
        server.destroy()
    report = {
        "benchmark": "dashboard page queries",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "events": args.events,
        "devices": args.devices,
        "days": DAYS,
        "repeat": args.repeat,
        "build_seconds": round(build_s, 1),
        "fill_seconds": fill,
        "mart_rows": sizes,
        "ceiling_s_per_page": CEILING_SECONDS,
        "cold_ceiling_s_per_page": COLD_CEILING_SECONDS,
        "pages": results,
        "all_within_ceiling": not over,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    if over:
        print(f"bench-dashboard: over the ceiling: {', '.join(over)} (plans above)")
        return 1
    print("bench-dashboard: every page within its ceilings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
