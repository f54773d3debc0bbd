"""Benchmark: the 15-minute cycle (one incremental `dbt build`) at two history sizes.

For each history size of BENCH_HISTORY_ROWS (comma-separated access-event counts,
default "1000000,50000000"; one ephemeral PostgreSQL, in ascending order) the raw
tables get that much history spread over the 7 days before the cycles (with a
health report per device every 15 minutes), then 15 minutes of stream at
--events-per-second (2,000 devices, a health report per device per minute), and a
full build; then another 15 minutes (1 % duplicates, 0.5 % events three days late)
and the incremental build that follows is timed, with its per-model seconds.
Ceiling, measured in the same run for each: a single `create table as select`
aggregating the same new rows per device and 15-minute window - the least any
transform of those rows can cost.

    BENCH_HISTORY_ROWS=1000000,50000000 PYTHONPATH=.:plugins \
        .venv/bin/python benchmarks/transform.py [--events-per-second 1000]

Targets (issue 18): the cycle within 20 s and 40x its ceiling; at the largest history
within 1.2x its time at the smallest. Writes benchmarks/results/transform.json
(`incremental_build_seconds` is the smallest history's, `history_rows_large` and
`incremental_build_seconds_large` the largest's); exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
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


HISTORY_EVENTS_SQL = """
insert into raw.access_events (kafka_topic, kafka_partition, kafka_offset, schema_version,
    event_id, device_id, household_id, event_ts, event_type, trigger_source, failure_reason,
    _ingested_at)
select 'smart-access.events', n %% 6, %(offset)s + n, 1, gen_random_uuid(),
    format('dev-%%s', 1 + n %% %(devices)s), format('hh-%%s', (1 + n %% %(devices)s) / 3),
    ts, kind, (array['app','keypad','remote','schedule','voice'])[1 + n %% 5],
    case when kind = 'fail' then 'obstruction' end,
    ts + interval '800 milliseconds'
from (
    select n, %(end)s::timestamptz - (n + 1)::bigint * %(step)s * interval '1 microsecond' as ts,
        case when n %% 40 = 0 then 'fail' when (n / %(devices)s) %% 2 = 0 then 'open'
             else 'close' end as kind
    from generate_series(%(first)s, %(last)s - 1) as n
) as generated
"""

HISTORY_HEALTH_SQL = """
insert into raw.device_health (kafka_topic, kafka_partition, kafka_offset, schema_version,
    device_id, reported_at, battery_pct, signal_strength_dbm, is_online, firmware_version,
    _ingested_at)
select 'smart-access.health', d %% 6, 900000000 + q * %(devices)s + d, 1, format('dev-%%s', d),
    %(end)s::timestamptz - (q + 1) * interval '15 minutes' + (d %% 60) * interval '1 second',
    greatest(20, 95 - (d %% 50)), -60 - d %% 50, true, '1.0.0',
    %(end)s::timestamptz - (q + 1) * interval '15 minutes' + (d %% 60) * interval '1 second'
        + interval '1 second'
from generate_series(1, %(devices)s) as d, generate_series(0, %(quarters)s - 1) as q
"""

HISTORY_DAYS = 7


def land_history(conn, first: int, last: int, total: int) -> None:
    """History rows [first, last) of `total`, spread evenly over the 7 days before T0."""
    step = HISTORY_DAYS * 86_400_000_000 // max(total, 1)  # microseconds between events
    with conn, conn.cursor() as cur:
        for start in range(first, last, 5_000_000):  # in slices: bounded memory per insert
            cur.execute(
                HISTORY_EVENTS_SQL,
                {"offset": 100_000_000, "devices": DEVICES, "end": T0, "step": step,
                 "first": start, "last": min(last, start + 5_000_000)},
            )  # fmt: skip
        if first == 0:
            cur.execute(
                HISTORY_HEALTH_SQL,
                {"devices": DEVICES, "end": T0, "quarters": HISTORY_DAYS * 96},
            )
    with conn, conn.cursor() as cur:
        cur.execute("analyze raw.access_events; analyze raw.device_health")


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


def _history_sizes() -> list[int]:
    text = os.environ.get("BENCH_HISTORY_ROWS", "1000000,50000000")
    try:
        sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        raise SystemExit(
            f"BENCH_HISTORY_ROWS must be comma-separated row counts, e.g. 1000000,50000000"
            f" (got {text!r})"
        ) from None
    if not sizes or sizes[0] < 0:
        raise SystemExit("BENCH_HISTORY_ROWS needs at least one row count >= 0")
    return sizes


def _cycle(conn, env, target, events: int, cycle: int, history_rows: int) -> dict:
    """Land 15 minutes and build them in full; land 15 more and time the incremental build."""
    first = T0 + timedelta(minutes=30 * cycle)
    land(conn, first, events, 10_000_000 * (2 * cycle + 1), late=False)
    ref = (first + timedelta(minutes=31)).isoformat()
    started = time.monotonic()
    full = run_dbt_build(full_refresh=True, vars={"reference_at": ref}, env=env,
                         target_path=target)  # fmt: skip
    full_seconds = time.monotonic() - started
    logger.info(
        "history %d: full build: %.1fs (success=%s)", history_rows, full_seconds, full.success
    )
    second = first + timedelta(minutes=15)
    land(conn, second, events, 10_000_000 * (2 * cycle + 2), late=True)
    started = time.monotonic()
    incremental = run_dbt_build(vars={"reference_at": ref}, env=env, target_path=target)
    incremental_seconds = time.monotonic() - started
    logger.info(
        "history %d: incremental build: %.1fs (success=%s)",
        history_rows,
        incremental_seconds,
        incremental.success,
    )
    with conn, conn.cursor() as cur:
        cur.execute("drop table if exists public.ceiling")
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
        cur.execute("select count(*) from raw.access_events where _ingested_at <= %s", (second,))
        rows_before = cur.fetchone()[0]
    incremental_models = _model_seconds(incremental)
    full_models = _model_seconds(full)
    _log_per_model(full_models, incremental_models, incremental, ceiling_seconds)
    return {
        "history_rows": rows_before,
        "full_build_seconds": round(full_seconds, 2),
        "full_success": full.success,
        "incremental_build_seconds": round(incremental_seconds, 2),
        "incremental_dbt_elapsed_seconds": round(incremental.elapsed_seconds, 2),
        "incremental_success": incremental.success,
        "ceiling_create_table_as_seconds": round(ceiling_seconds, 2),
        "ratio_to_ceiling": round(incremental_seconds / max(ceiling_seconds, 1e-6), 1),
        "incremental_model_seconds": incremental_models,
        "incremental_test_seconds_total": round(_test_seconds(incremental), 2),
        "incremental_slowest_tests": _slowest_tests(incremental),
        "full_build_model_seconds": full_models,
    }


# Disk per access event of history at the largest size, measured here: landing 50 M
# events took 42 GB (raw with its three indexes, the health history and WAL: ~0.85 KB
# an event); the full build then adds the fact (~0.35 KB with its indexes), its
# temporary copy while it is built (~0.3 KB) and door sessions (~0.1 KB), with a
# margin for WAL. 50 M events need ~85 GB.
BYTES_PER_HISTORY_ROW = 1700


def _check_disk(largest: int) -> None:
    """Refuse, in one line, a history the temporary folder cannot hold."""
    folder = tempfile.gettempdir()
    needed = largest * BYTES_PER_HISTORY_ROW
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise SystemExit(
            f"BENCH_HISTORY_ROWS={largest} needs about {needed / 1e9:.0f} GB free in {folder}"
            f" ({free / 1e9:.0f} GB are): use a smaller size or point TMPDIR at a larger disk"
        )


TARGET_SECONDS = 20
TARGET_CEILING_RATIO = 40
TARGET_HISTORY_GROWTH = 1.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events-per-second", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    events = args.events_per_second * 15 * 60
    sizes = _history_sizes()
    _check_disk(sizes[-1])
    pg = EphemeralPostgres.create()
    try:
        env = {**pg.env(user="smart_access_transformer"), "DBT_TARGET": "test"}
        env["DBT_PASSWORD"] = pg.role_passwords["smart_access_transformer"]
        env = {**os.environ, **env}
        target = pg.root / "dbt-target"
        conn = psycopg2.connect(pg.dsn())
        with conn, conn.cursor() as cur:
            cur.execute(REGISTRY_SQL, {"t0": T0 - timedelta(days=HISTORY_DAYS + 1),
                                       "devices": DEVICES})  # fmt: skip
        histories = []
        landed = 0
        for cycle, size in enumerate(sizes):
            started = time.monotonic()
            land_history(conn, landed, size, sizes[-1])
            logger.info("history: %d rows landed in %.1fs", size, time.monotonic() - started)
            landed = size
            histories.append(_cycle(conn, env, target, events, cycle, size))
        conn.close()
        small, large = histories[0], histories[-1]
        growth = large["incremental_build_seconds"] / max(small["incremental_build_seconds"], 1e-6)
        checks = {
            "within_seconds": small["incremental_build_seconds"] <= TARGET_SECONDS,
            "within_ceiling_ratio": small["ratio_to_ceiling"] <= TARGET_CEILING_RATIO,
            "within_history_growth": growth <= TARGET_HISTORY_GROWTH,
            "builds_succeeded": all(
                h["incremental_success"] and h["full_success"] for h in histories
            ),
        }
        result = {
            "benchmark": "transform",
            "measured_at": datetime.now(UTC).isoformat(),
            "events_per_cycle": events,
            "events_per_second": args.events_per_second,
            "health_reports_per_cycle": DEVICES * 15,
            "history_rows": small["history_rows"],
            "full_build_seconds": small["full_build_seconds"],
            "incremental_build_seconds": small["incremental_build_seconds"],
            "incremental_dbt_elapsed_seconds": small["incremental_dbt_elapsed_seconds"],
            "incremental_success": small["incremental_success"],
            "ceiling_create_table_as_seconds": small["ceiling_create_table_as_seconds"],
            "ratio_to_ceiling": small["ratio_to_ceiling"],
            "incremental_model_seconds": small["incremental_model_seconds"],
            "incremental_test_seconds_total": small["incremental_test_seconds_total"],
            "incremental_slowest_tests": small["incremental_slowest_tests"],
            "full_build_model_seconds": small["full_build_model_seconds"],
            "history_rows_large": large["history_rows"],
            "incremental_build_seconds_large": large["incremental_build_seconds"],
            "incremental_model_seconds_large": large["incremental_model_seconds"],
            "history_growth_ratio": round(growth, 2),
            "histories": histories,
            "target_seconds": TARGET_SECONDS,
            "target_ceiling_ratio": TARGET_CEILING_RATIO,
            "target_history_growth": TARGET_HISTORY_GROWTH,
            **checks,
            "within_target": all(checks.values()),
            "load_average": list(os.getloadavg()),
        }
        logger.info("%-36s %s", "model (seconds per history size)",
                    "  ".join(f"{h['history_rows']:>12}" for h in histories))  # fmt: skip
        for name in small["incremental_model_seconds"]:
            logger.info(
                "%-36s %s",
                name,
                "  ".join(f"{h['incremental_model_seconds'].get(name, float('nan')):>12.2f}"
                          for h in histories),
            )  # fmt: skip
        out = REPO / "benchmarks" / "results" / "transform.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "histories"}, indent=2))
        return 0 if result["within_target"] else 1
    finally:
        pg.destroy()


if __name__ == "__main__":
    sys.exit(main())
