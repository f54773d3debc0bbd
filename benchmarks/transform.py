"""Benchmark: one incremental `dbt build` after 15 minutes of data at 1k events/s.

An ephemeral PostgreSQL gets 15 minutes of stream (900k access events from 2,000
devices, a health report per device per minute, the registry), a full build, then
another 15 minutes (with 1 % duplicates and 0.5 % events up to three days late);
the incremental build that follows is timed. Ceiling, measured in the same run: a
single `create table as select` aggregating the same new rows per device and
15-minute window - the least any transform of those rows can cost.

    PYTHONPATH=.:plugins .venv/bin/python benchmarks/transform.py [--events-per-second 1000]

Writes benchmarks/results/transform.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]

from smart_access.dbt import DbtBuildResult, run_dbt_build  # noqa: E402
from stack.ephemeral import EphemeralPostgres  # noqa: E402

logger = logging.getLogger("benchmarks.transform")
DEVICES = 2000
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

REGISTRY_SQL = """
insert into raw.device_registry (kafka_topic, kafka_partition, kafka_offset, schema_version,
    device_id, household_id, device_type, model, firmware_version, installed_at, status,
    updated_at, region, timezone, _ingested_at)
select 'smart-access.devices', d %% 3, d, 1, format('dev-%%s', d), format('hh-%%s', d / 3),
    (array['garage_door','gate','smart_lock'])[1 + d %% 3], format('M-%%s', d %% 5), '1.0.0',
    %(t0)s::timestamptz - interval '100 days', 'active', %(t0)s::timestamptz - interval '1 day',
    (array['north','south','east','west'])[1 + d %% 4], 'Europe/Berlin', %(t0)s
from generate_series(1, %(devices)s) as d
"""

EVENTS_SQL = """
insert into raw.access_events (kafka_topic, kafka_partition, kafka_offset, schema_version,
    event_id, device_id, household_id, event_ts, event_type, trigger_source, failure_reason,
    _ingested_at)
select 'smart-access.events', n %% 6, %(offset)s + n, 1, gen_random_uuid(),
    format('dev-%%s', 1 + n %% %(devices)s), format('hh-%%s', (1 + n %% %(devices)s) / 3),
    ts, kind, (array['app','keypad','remote','schedule','voice'])[1 + n %% 5],
    case when kind = 'fail' then 'obstruction' end,
    ts + interval '800 milliseconds'
from (
    select n, %(start)s::timestamptz + (n * %(step)s) * interval '1 millisecond' as ts,
        case when n %% 40 = 0 then 'fail' when (n / %(devices)s) %% 2 = 0 then 'open'
             else 'close' end as kind
    from generate_series(0, %(count)s - 1) as n
) as generated
"""

LATE_AND_DUPLICATES_SQL = """
insert into raw.access_events (kafka_topic, kafka_partition, kafka_offset, schema_version,
    event_id, device_id, household_id, event_ts, event_type, trigger_source, failure_reason,
    _ingested_at)
select kafka_topic, kafka_partition, %(offset)s + row_number() over (), schema_version,
    case when late then gen_random_uuid() else event_id end, device_id, household_id,
    case when late then event_ts - interval '3 days' else event_ts end, event_type,
    trigger_source, failure_reason, %(landed)s
from (
    select *, random() < 0.33 as late from raw.access_events
    where _ingested_at > %(since)s order by random() limit %(count)s
) as picked
"""

HEALTH_SQL = """
insert into raw.device_health (kafka_topic, kafka_partition, kafka_offset, schema_version,
    device_id, reported_at, battery_pct, signal_strength_dbm, is_online, firmware_version,
    _ingested_at)
select 'smart-access.health', d %% 6, %(offset)s + m * %(devices)s + d, 1, format('dev-%%s', d),
    %(start)s::timestamptz + m * interval '1 minute' + (d %% 60) * interval '1 second',
    greatest(0, 90 - (d %% 100) - m / 10), -60 - d %% 50, d %% 97 <> 0, '1.0.0',
    %(start)s::timestamptz + m * interval '1 minute' + (d %% 60) * interval '1 second'
        + interval '1 second'
from generate_series(1, %(devices)s) as d, generate_series(0, 14) as m
"""


def land(conn, start: datetime, events: int, offset: int, late: bool) -> None:
    with conn, conn.cursor() as cur:
        step = 15 * 60 * 1000 / events
        cur.execute(
            EVENTS_SQL,
            {"offset": offset, "devices": DEVICES, "start": start, "step": step, "count": events},
        )
        cur.execute(HEALTH_SQL, {"offset": offset, "devices": DEVICES, "start": start})
        if late:
            cur.execute(
                LATE_AND_DUPLICATES_SQL,
                {
                    "offset": offset + events,
                    "since": start,
                    "count": events // 100,
                    "landed": start + timedelta(minutes=15),
                },
            )
        cur.execute("analyze raw.access_events; analyze raw.device_health")


def _model_seconds(result: DbtBuildResult) -> dict[str, float]:
    """Each model's and snapshot's execution time (run_results.json), slowest first."""
    nodes = [n for n in result.nodes if n.resource_type in ("model", "snapshot")]
    nodes.sort(key=lambda n: -n.execution_seconds)
    return {n.name: round(n.execution_seconds, 2) for n in nodes}


def _test_seconds(result: DbtBuildResult) -> float:
    tests = [n for n in result.nodes if n.resource_type in ("test", "unit_test")]
    return sum(n.execution_seconds for n in tests)


def _slowest_tests(result: DbtBuildResult, count: int = 10) -> dict[str, float]:
    """Data tests by their readable name (the unique_id's third part, not the hash)."""
    tests = [n for n in result.nodes if n.resource_type == "test"]
    tests.sort(key=lambda n: -n.execution_seconds)
    return {n.unique_id.split(".")[2]: round(n.execution_seconds, 2) for n in tests[:count]}


def _log_per_model(
    full: dict[str, float],
    incremental: dict[str, float],
    result: DbtBuildResult,
    ceiling_seconds: float,
) -> None:
    logger.info("%-36s %10s %12s", "model", "full (s)", "incr. (s)")
    for name, seconds in incremental.items():
        logger.info("%-36s %10.2f %12.2f", name, full.get(name, float("nan")), seconds)
    logger.info("%-36s %10s %12.2f", "data and unit tests (sum)", "", _test_seconds(result))
    logger.info("%-36s %10s %12.2f", "ceiling (one create table as)", "", ceiling_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events-per-second", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    events = args.events_per_second * 15 * 60
    pg = EphemeralPostgres.create()
    try:
        env = {**pg.env(user="smart_access_transformer"), "DBT_TARGET": "test"}
        env["DBT_PASSWORD"] = pg.role_passwords["smart_access_transformer"]
        import os

        env = {**os.environ, **env}
        target = pg.root / "dbt-target"
        conn = psycopg2.connect(pg.dsn())
        with conn, conn.cursor() as cur:
            cur.execute(REGISTRY_SQL, {"t0": T0, "devices": DEVICES})
        land(conn, T0, events, 0, late=False)
        ref = (T0 + timedelta(minutes=31)).isoformat()
        started = time.monotonic()
        full = run_dbt_build(full_refresh=True, vars={"reference_at": ref}, env=env,
                             target_path=target)  # fmt: skip
        full_seconds = time.monotonic() - started
        logger.info(
            "full build of %d events: %.1fs (success=%s)", events, full_seconds, full.success
        )

        second = T0 + timedelta(minutes=15)
        land(conn, second, events, 10_000_000, late=True)
        started = time.monotonic()
        incremental = run_dbt_build(vars={"reference_at": ref}, env=env, target_path=target)
        incremental_seconds = time.monotonic() - started
        logger.info(
            "incremental build: %.1fs (success=%s)", incremental_seconds, incremental.success
        )

        with conn, conn.cursor() as cur:
            started = time.monotonic()
            cur.execute(
                """
                create table public.ceiling as
                select device_id, date_bin('15 minutes', event_ts, timestamptz '2000-01-01')
                           as window_start_at,
                       count(*) filter (where event_type = 'fail') as fails, count(*) as events
                from raw.access_events where _ingested_at > %s group by 1, 2
                """,
                (second,),
            )
            ceiling_seconds = time.monotonic() - started
        conn.close()
        incremental_models = _model_seconds(incremental)
        full_models = _model_seconds(full)
        _log_per_model(full_models, incremental_models, incremental, ceiling_seconds)
        result = {
            "benchmark": "transform",
            "measured_at": datetime.now(UTC).isoformat(),
            "events_per_cycle": events,
            "health_reports_per_cycle": DEVICES * 15,
            "full_build_seconds": round(full_seconds, 2),
            "incremental_build_seconds": round(incremental_seconds, 2),
            "incremental_dbt_elapsed_seconds": round(incremental.elapsed_seconds, 2),
            "incremental_success": incremental.success,
            "ceiling_create_table_as_seconds": round(ceiling_seconds, 2),
            "target_seconds": 60,
            "within_target": incremental_seconds <= 60 and incremental.success,
            "incremental_model_seconds": incremental_models,
            "incremental_test_seconds_total": round(_test_seconds(incremental), 2),
            "incremental_slowest_tests": _slowest_tests(incremental),
            "full_build_model_seconds": full_models,
        }
        out = REPO / "benchmarks" / "results" / "transform.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return 0 if result["within_target"] else 1
    finally:
        pg.destroy()


if __name__ == "__main__":
    sys.exit(main())
