"""Seeded databases for the dashboard and inspector tests.

`seeded_database(pg)` creates (once per test session) a database with the platform's
migrations applied and the dbt marts the dashboard reads, created as the transformer
role with the columns of the dbt project, filled with deterministic data. The
`Seed` it returns holds the same rows as Python objects, so tests compute the
expected figures independently of the dashboard's SQL.
`empty_database(pg)` is a migrated database where dbt has never run.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg2
import psycopg2.extras
from psycopg2 import sql

from stack import postgres
from stack.ephemeral import EphemeralPostgres
from stack.migrate import apply_migrations

SEEDED = "smart_access_dashboard"
EMPTY = "smart_access_dashboard_empty"

REGIONS = ["north", "south", "east", None]
TYPES = ["garage_door", "gate", "smart_lock"]
MODELS = {"garage_door": ["GD-100", "GD-200"], "gate": ["GT-1"], "smart_lock": ["SL-9"]}
SOURCES = ["app", "keypad", "remote", "schedule", "voice", "auto_close"]
ALERT_TYPES = ["repeated_failures", "door_left_open", "low_battery", "offline"]

# Tables as the dbt project builds them (dbt_project/models/marts); only the columns
# the dashboard reads, plus the keys. The fact's partitioned table (migration 0051)
# makes way for a plain one: the seed bulk-loads it without day partitions.
MART_DDL = """
drop table if exists marts.fct_access_events;
create table marts.dim_device (
    device_version_id text primary key, device_id text not null, household_id text not null,
    device_type text not null, model text not null, firmware_version text not null,
    device_status text not null, region text, timezone text, installed_at timestamptz,
    valid_from_at timestamptz not null, valid_to_at timestamptz, is_current boolean not null
);
create table marts.dim_household (
    household_id text primary key, region text, timezone text, device_count bigint,
    active_device_count bigint, first_installed_at timestamptz
);
create table marts.fct_access_events (
    event_id uuid primary key, device_id text not null, household_id text not null,
    event_at timestamptz not null, event_type text not null, trigger_source text not null,
    user_id text, failure_reason text, device_version_id text, device_type text, model text,
    firmware_version text, region text, ingested_at timestamptz not null,
    transformed_at timestamptz not null
);
create index on marts.fct_access_events (device_id, event_at);
create index on marts.fct_access_events (household_id, event_at);
create table marts.agg_access_15min (
    device_id text not null, window_start_at timestamptz not null,
    window_end_at timestamptz not null, event_count bigint not null, open_count bigint not null,
    close_count bigint not null, fail_count bigint not null, failure_rate numeric,
    distinct_trigger_count bigint, last_event_at timestamptz, transformed_at timestamptz,
    unique (device_id, window_start_at)
);
create index on marts.agg_access_15min (window_start_at);
create table marts.agg_access_fleet_15min (
    window_start_at timestamptz not null, region text not null, device_type text not null,
    model text not null, event_count bigint not null, open_count bigint not null,
    close_count bigint not null, fail_count bigint not null,
    app_trigger_count bigint not null, keypad_trigger_count bigint not null,
    remote_trigger_count bigint not null, schedule_trigger_count bigint not null,
    voice_trigger_count bigint not null, auto_close_trigger_count bigint not null,
    transformed_at timestamptz, unique (window_start_at, region, device_type, model)
);
create table marts.agg_access_hourly (
    hour_start_at timestamptz not null, household_id text not null, region text not null,
    device_type text not null, model text not null, event_count bigint not null,
    open_count bigint not null, close_count bigint not null, fail_count bigint not null,
    app_trigger_count bigint not null, keypad_trigger_count bigint not null,
    remote_trigger_count bigint not null, schedule_trigger_count bigint not null,
    voice_trigger_count bigint not null, auto_close_trigger_count bigint not null,
    failure_rate numeric, distinct_trigger_count bigint, trigger_sources text[],
    active_device_count bigint, transformed_at timestamptz
);
create index on marts.agg_access_hourly (hour_start_at, household_id);
create table marts.agg_access_daily (
    day_start_at timestamptz not null, household_id text not null, region text not null,
    device_type text not null, model text not null, event_count bigint not null,
    open_count bigint not null, close_count bigint not null, fail_count bigint not null,
    app_trigger_count bigint not null, keypad_trigger_count bigint not null,
    remote_trigger_count bigint not null, schedule_trigger_count bigint not null,
    voice_trigger_count bigint not null, auto_close_trigger_count bigint not null,
    failure_rate numeric, distinct_trigger_count bigint, trigger_sources text[],
    transformed_at timestamptz
);
create index on marts.agg_access_daily (day_start_at, household_id);
create table marts.fct_device_health_hourly (
    device_id text not null, hour_start_at timestamptz not null, report_count bigint not null,
    battery_min_pct smallint, battery_avg_pct numeric, signal_avg_dbm numeric,
    online_ratio numeric, last_ingested_at timestamptz, unique (device_id, hour_start_at)
);
create table marts.device_status_current (
    device_id text primary key, household_id text, device_type text, model text,
    device_status text, region text, firmware_version text, last_seen_at timestamptz,
    last_health_report_at timestamptz, last_event_at timestamptz, battery_pct smallint,
    signal_strength_dbm smallint, is_online boolean, event_count_24h bigint,
    fail_count_24h bigint, failure_rate_24h numeric, health_state text not null,
    evaluated_at timestamptz
);
create table marts.fct_alerts (
    alert_id text primary key, alert_type text not null, device_id text not null,
    household_id text, started_at timestamptz not null, ended_at timestamptz,
    is_open boolean not null, severity text not null, evaluated_at timestamptz
);
create view staging.stg_smart_access__dead_letters as
select kafka_topic, kafka_partition, kafka_offset, kafka_timestamp as kafka_published_at,
       encode(kafka_key, 'escape') as kafka_key, error_kind, error_detail,
       length(payload) as payload_bytes, _ingested_at as ingested_at
from raw.dead_letters;
"""

# The ops tables of migrations 0020 (dbt) and 0030 (Airflow), for databases where
# those migrations are not applied; `if not exists` leaves the real ones alone.
OPS_DDL = """
create table if not exists ops.dbt_runs (
    invocation_id text primary key, command text not null, started_at timestamptz not null,
    finished_at timestamptz not null, elapsed_seconds double precision not null,
    return_code integer not null, success boolean not null,
    tests_passed integer not null default 0, tests_failed integer not null default 0
);
create table if not exists ops.dbt_node_results (
    invocation_id text not null, unique_id text not null, resource_type text not null,
    node_name text not null, status text not null, failures bigint, message text,
    primary key (invocation_id, unique_id)
);
create table if not exists ops.source_freshness (
    invocation_id text not null, unique_id text not null, source_name text not null,
    table_name text not null, status text not null, max_loaded_at timestamptz,
    snapshotted_at timestamptz not null, age_seconds double precision,
    primary key (invocation_id, unique_id)
);
create table if not exists ops.pipeline_runs (
    dag_id text not null, run_id text not null, state text not null default 'running',
    started_at timestamptz not null default clock_timestamp(), finished_at timestamptz,
    duration_seconds double precision, gate_status text, consumer_lag_total bigint,
    raw_freshness_seconds double precision, models_succeeded integer, models_failed integer,
    tests_passed integer, tests_failed integer, failed_task text, error text,
    primary key (dag_id, run_id)
);
create table if not exists ops.pipeline_consumer_lag (
    dag_id text not null, run_id text not null, consumer_group text not null,
    topic text not null, partition integer not null, committed_offset bigint,
    end_offset bigint not null, lag bigint not null,
    measured_at timestamptz not null default clock_timestamp(),
    primary key (dag_id, run_id, consumer_group, topic, partition)
);
grant select on ops.dbt_runs, ops.dbt_node_results, ops.source_freshness,
    ops.pipeline_runs, ops.pipeline_consumer_lag to smart_access_analyst;
"""


@dataclass
class Seed:
    database: str
    now: datetime
    devices: list[dict] = field(default_factory=list)  # current versions
    versions: list[dict] = field(default_factory=list)  # every dim_device row
    events: list[dict] = field(default_factory=list)
    status: list[dict] = field(default_factory=list)
    health_hourly: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    notifications: list[dict] = field(default_factory=list)
    batches: list[dict] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)


def _floor(ts: datetime, minutes: int) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    step = timedelta(minutes=minutes)
    return epoch + ((ts - epoch) // step) * step


def _migrated(pg: EphemeralPostgres, database: str) -> str:
    postgres.ensure_database(pg.dsn("postgres"), database)
    apply_migrations(pg.dsn(database), pg.role_passwords)
    with psycopg2.connect(pg.dsn(database)) as conn, conn.cursor() as cur:
        cur.execute(OPS_DDL)
    return database


_SEEDS: dict[int, Seed] = {}
_EMPTY: dict[int, str] = {}


def empty_database(pg: EphemeralPostgres) -> str:
    """Migrated, but dbt never ran (created once per PostgreSQL server)."""
    if pg.port not in _EMPTY:
        _EMPTY[pg.port] = _migrated(pg, EMPTY)
    return _EMPTY[pg.port]


def _insert(cur: psycopg2.extensions.cursor, table: str, rows: list[dict]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    psycopg2.extras.execute_values(
        cur,
        sql.SQL("insert into {} ({}) values %s").format(
            sql.SQL(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        ),
        [tuple(r[c] for c in columns) for r in rows],
    )


def _generate(now: datetime) -> Seed:
    rnd = random.Random(20261122)
    seed = Seed(SEEDED, now)
    households = [f"hh-{n:03d}" for n in range(12)]
    region_of = {h: REGIONS[i % len(REGIONS)] for i, h in enumerate(households)}
    for n in range(36):
        device_type = TYPES[n % 3]
        household = households[n % len(households)]
        current = {
            "device_version_id": f"v-{n}-2",
            "device_id": f"dev-{n:03d}",
            "household_id": household,
            "device_type": device_type,
            "model": MODELS[device_type][n % len(MODELS[device_type])],
            "firmware_version": "2.1.0" if n % 4 else "2.0.3",
            "device_status": "retired" if n == 35 else "active",
            "region": region_of[household],
            "valid_from_at": now - timedelta(days=3, minutes=n),
            "valid_to_at": None,
            "is_current": True,
        }
        if n % 5 == 0:  # a firmware rollout: an older version of the device
            seed.versions.append(
                {
                    **current,
                    "device_version_id": f"v-{n}-1",
                    "firmware_version": "1.9.0",
                    "valid_from_at": now - timedelta(days=30),
                    "valid_to_at": current["valid_from_at"],
                    "is_current": False,
                }
            )
        seed.versions.append(current)
        seed.devices.append(current)
    for i in range(2500):
        device = rnd.choice(seed.devices[:35])
        event_type = rnd.choices(["open", "close", "fail"], [45, 45, 10])[0]
        at = now - timedelta(seconds=rnd.uniform(1, 50 * 3600))
        seed.events.append(
            {
                "event_id": str(UUID(int=rnd.getrandbits(128), version=4)),
                "device_id": device["device_id"],
                "household_id": device["household_id"],
                "event_at": at,
                "event_type": event_type,
                "trigger_source": rnd.choice(SOURCES),
                "failure_reason": "obstruction" if event_type == "fail" else None,
                "device_type": device["device_type"],
                "model": device["model"],
                "region": device["region"],
                "firmware_version": device["firmware_version"],
                "device_version_id": device["device_version_id"],
                "ingested_at": at + timedelta(seconds=2),
                "transformed_at": now,
                "_n": i,
            }
        )
    health_states = ["ok", "warning", "critical"]
    for device in seed.devices:
        online = rnd.random() > 0.25
        seed.status.append(
            {
                "device_id": device["device_id"],
                "household_id": device["household_id"],
                "device_type": device["device_type"],
                "model": device["model"],
                "device_status": device["device_status"],
                "region": device["region"],
                "firmware_version": device["firmware_version"],
                "battery_pct": rnd.randint(0, 100),
                "signal_strength_dbm": rnd.randint(-119, -30),
                "is_online": online,
                "last_health_report_at": now - timedelta(minutes=rnd.randint(1, 300)),
                "last_event_at": now - timedelta(minutes=rnd.randint(1, 600)),
                "failure_rate_24h": round(rnd.random() / 3, 6),
                "health_state": health_states[0] if online else rnd.choice(health_states[1:]),
            }
        )
        for hours_back in (1, 2, 3):
            seed.health_hourly.append(
                {
                    "device_id": device["device_id"],
                    "hour_start_at": _floor(now, 60) - timedelta(hours=hours_back),
                    "report_count": 12,
                    "battery_min_pct": rnd.randint(0, 100),
                    "battery_avg_pct": rnd.randint(0, 100),
                    "signal_avg_dbm": rnd.randint(-110, -40),
                    "online_ratio": rnd.choice([0, 0.5, 1, 1]),
                }
            )
    for n in range(40):
        started = now - timedelta(hours=rnd.uniform(0.5, 200))
        is_open = n % 4 == 0
        seed.alerts.append(
            {
                "alert_id": f"alert-{n:02d}",
                "alert_type": ALERT_TYPES[n % 4],
                "device_id": seed.devices[n % 35]["device_id"],
                "household_id": seed.devices[n % 35]["household_id"],
                "started_at": started,
                "ended_at": None if is_open else started + timedelta(minutes=rnd.randint(5, 300)),
                "is_open": is_open,
                "severity": "critical" if n % 3 == 0 else "warning",
            }
        )
    # what the notifier did with some of them: one each of its outcomes, one 10 days ago
    statuses = ["sent", "sent", "held", "throttled", "failed", "sending", "sent"]
    for n, status in enumerate(statuses):
        alert = seed.alerts[n]
        seed.notifications.append(
            {
                "alert_id": alert["alert_id"],
                "transition": "opened",
                "alert_type": alert["alert_type"],
                "severity": alert["severity"],
                "device_id": alert["device_id"],
                "household_id": alert["household_id"],
                "started_at": alert["started_at"],
                "status": status,
                "attempts": 0 if status in ("held", "throttled") else 1,
                "updated_at": now - timedelta(days=10 if n == 6 else 0, minutes=5 * n + 1),
                "sent_at": now - timedelta(minutes=5 * n + 1) if status == "sent" else None,
            }
        )
    for n in range(60):
        committed = now - timedelta(minutes=3 * n + 1)
        seed.batches.append(
            {
                "consumer_group": "smart-access-sink",
                "consumer_id": f"consumer-{n % 2}",
                "started_at": committed - timedelta(milliseconds=200),
                "committed_at": committed,
                "duration_ms": 200.0,
                "events_valid": 100 + n,
                "events_invalid": n % 3,
                "health_valid": 50,
                "devices_valid": n % 2,
                "max_event_at": committed - timedelta(seconds=1),
                "latency_p50_ms": 300.0 + n,
                "latency_max_ms": 900.0 + n,
                "consumer_lag": 10 * (n % 5),
            }
        )
    kinds = ["invalid_json", "schema_violation", "schema_violation", "future_timestamp"]
    for n in range(9):
        seed.dead_letters.append(
            {
                "kafka_topic": "smart-access.events",
                "kafka_partition": n % 3,
                "kafka_offset": 1000 + n,
                "kafka_key": f"dev-{n:03d}".encode(),
                "payload": b'{"event_type": "teleport"}',
                "error_kind": kinds[n % 4],
                "error_detail": f"detail {n}",
                "_ingested_at": now - timedelta(minutes=10 * n + 1),
            }
        )
    for n in range(3):
        started = now - timedelta(minutes=15 * n + 5)
        seed.runs.append(
            {
                "dag_id": "smart_access_streaming_pipeline",
                "run_id": f"scheduled__{n}",
                "state": "failed" if n == 1 else "success",
                "started_at": started,
                "finished_at": started + timedelta(seconds=40),
                "duration_seconds": 40.0,
                "gate_status": "ok",
                "consumer_lag_total": 12,
                "raw_freshness_seconds": 4.0,
                "models_succeeded": 12,
                "models_failed": 0,
                "tests_passed": 50 - n,
                "tests_failed": n,
            }
        )
    return seed


def _aggregates(seed: Seed) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """agg_access_15min, agg_access_fleet_15min, agg_access_hourly and agg_access_daily
    rows, as dbt builds them."""
    windows: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    fleet: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    hours: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    days: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    for e in seed.events:
        w = windows[(e["device_id"], _floor(e["event_at"], 15))]
        h = hours[
            (
                _floor(e["event_at"], 60),
                e["household_id"],
                e["region"] or "unknown",
                e["device_type"],
                e["model"],
            )
        ]
        d = days[(_floor(e["event_at"], 24 * 60), *list(h_key(e)))]
        f = fleet[(_floor(e["event_at"], 15), *h_key(e)[1:])]
        for bucket in (w, h, d, f):
            bucket["event_count"] += 1
            bucket[f"{e['event_type']}_count"] += 1
        for bucket in (h, d, f):
            bucket[f"{e['trigger_source']}_trigger_count"] += 1
    fifteen = [
        {
            "device_id": device,
            "window_start_at": start,
            "window_end_at": start + timedelta(minutes=15),
            "event_count": c["event_count"],
            "open_count": c["open_count"],
            "close_count": c["close_count"],
            "fail_count": c["fail_count"],
        }
        for (device, start), c in windows.items()
    ]
    fleet_rows = [
        {
            "window_start_at": key[0],
            "region": key[1],
            "device_type": key[2],
            "model": key[3],
            "event_count": c["event_count"],
            "open_count": c["open_count"],
            "close_count": c["close_count"],
            "fail_count": c["fail_count"],
            **{f"{s}_trigger_count": c[f"{s}_trigger_count"] for s in SOURCES},
        }
        for key, c in fleet.items()
    ]
    hourly = [
        {
            "hour_start_at": key[0],
            "household_id": key[1],
            "region": key[2],
            "device_type": key[3],
            "model": key[4],
            "event_count": c["event_count"],
            "open_count": c["open_count"],
            "close_count": c["close_count"],
            "fail_count": c["fail_count"],
            **{f"{s}_trigger_count": c[f"{s}_trigger_count"] for s in SOURCES},
        }
        for key, c in hours.items()
    ]
    daily = [
        {
            "day_start_at": key[0],
            "household_id": key[1],
            "region": key[2],
            "device_type": key[3],
            "model": key[4],
            "event_count": c["event_count"],
            "open_count": c["open_count"],
            "close_count": c["close_count"],
            "fail_count": c["fail_count"],
            **{f"{s}_trigger_count": c[f"{s}_trigger_count"] for s in SOURCES},
        }
        for key, c in days.items()
    ]
    return fifteen, fleet_rows, hourly, daily


def h_key(e: dict) -> tuple[str, str, str, str]:
    return (e["household_id"], e["region"] or "unknown", e["device_type"], e["model"])


def seeded_database(pg: EphemeralPostgres) -> Seed:
    """The seeded database (created once per PostgreSQL server) and its rows."""
    if pg.port not in _SEEDS:
        _SEEDS[pg.port] = _seed(pg)
    return _SEEDS[pg.port]


def _seed(pg: EphemeralPostgres) -> Seed:
    database = _migrated(pg, SEEDED)
    seed = _generate(datetime.now(UTC))
    fifteen, fleet, hourly, daily = _aggregates(seed)
    with psycopg2.connect(pg.dsn(database)) as conn, conn.cursor() as cur:
        cur.execute("set role smart_access_transformer")  # as dbt: default grants apply
        cur.execute(MART_DDL)
        _insert(cur, "marts.dim_device", seed.versions)
        _insert(
            cur,
            "marts.fct_access_events",
            [{k: v for k, v in e.items() if k != "_n"} for e in seed.events],
        )
        _insert(cur, "marts.agg_access_15min", fifteen)
        _insert(cur, "marts.agg_access_fleet_15min", fleet)
        _insert(cur, "marts.agg_access_hourly", hourly)
        _insert(cur, "marts.agg_access_daily", daily)
        _insert(cur, "marts.device_status_current", seed.status)
        _insert(cur, "marts.fct_device_health_hourly", seed.health_hourly)
        _insert(cur, "marts.fct_alerts", seed.alerts)
        cur.execute("reset role")
        _insert(cur, "ops.ingest_batches", seed.batches)
        _insert(cur, "raw.dead_letters", seed.dead_letters)
        _insert(cur, "ops.pipeline_runs", seed.runs)
        _insert(cur, "ops.alert_notifications", seed.notifications)
        cur.execute(
            "insert into ops.dbt_runs (invocation_id, command, started_at, finished_at, "
            "elapsed_seconds, return_code, success, tests_passed, tests_failed) values "
            "('inv-1', 'build', now() - interval '6 minutes', now() - interval '5 minutes', "
            "60, 1, false, 48, 2)"
        )
        cur.execute(
            "insert into ops.dbt_node_results (invocation_id, unique_id, resource_type, "
            "node_name, status, failures, message) values "
            "('inv-1', 'test.a', 'test', 'unique_fct_access_events_event_id', 'pass', 0, null), "
            "('inv-1', 'test.b', 'test', 'not_null_fct_alerts_alert_id', 'fail', 3, "
            "'Got 3 results')"
        )
        cur.execute(
            "insert into ops.source_freshness (invocation_id, unique_id, source_name, "
            "table_name, status, max_loaded_at, snapshotted_at, age_seconds) values "
            "('inv-1', 'source.events', 'smart_access', 'access_events', 'pass', "
            "now() - interval '20 seconds', now(), 20)"
        )
    return seed
