"""Every SQL statement the dashboard and the inspector run, in one place.

The marts are built by dbt (dbt_project/models/marts) and the ops tables by the
migrations; if a column is renamed there, this is the only file to change. Each
query names the relations it reads so an empty database can be explained to the
user. Parameters are always bound (`:name`), never formatted into the text.

Columns relied on (relation: columns)
- marts.fct_access_events: event_id, event_at, device_id, household_id, event_type,
  trigger_source, failure_reason, region, device_type, model
- marts.agg_access_15min (device x 15-min window): device_id, window_start_at,
  event_count, open_count, close_count, fail_count
- marts.agg_access_hourly (hour x household x region x device type x model):
  hour_start_at, household_id, region, device_type, model, event_count, open_count,
  close_count, fail_count, <source>_trigger_count for each of TRIGGER_SOURCES
  ('unknown' for attributes the registry does not give)
- marts.agg_access_daily: the same with day_start_at
- marts.device_status_current: device_id, household_id, region, device_type, model,
  device_status, firmware_version, battery_pct, signal_strength_dbm, is_online,
  last_health_report_at, last_event_at, failure_rate_24h, health_state
- marts.fct_device_health_hourly: device_id, hour_start_at, report_count,
  battery_min_pct, battery_avg_pct, signal_avg_dbm, online_ratio
- marts.dim_device (SCD2): device_id, household_id, device_type, model,
  firmware_version, device_status, region, valid_from_at, valid_to_at, is_current
- marts.fct_alerts: alert_id, alert_type, severity, device_id, household_id,
  started_at, ended_at, is_open
- staging.stg_smart_access__dead_letters: kafka_topic, kafka_partition, kafka_offset,
  kafka_key, error_kind, error_detail, payload_bytes, ingested_at
- ops.ingest_batches, ops.consumer_offsets (migration 0002); ops.dbt_runs,
  ops.dbt_node_results, ops.source_freshness (0020); ops.pipeline_runs,
  ops.pipeline_consumer_lag (0030)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LOW_BATTERY_PCT", "SORTABLE_DEVICE_COLUMNS", "TRIGGER_SOURCES", "Query"]

# The event contract's trigger sources (streaming.contracts.TriggerSource), in the
# order of the dbt macro trigger_sources that gives the rollups their columns.
TRIGGER_SOURCES = ("app", "keypad", "remote", "schedule", "voice", "auto_close")

# Same threshold as the dbt var `low_battery_pct` (device_status_current, fct_alerts).
LOW_BATTERY_PCT = 15

# Columns the device table may be sorted by: the ORDER BY is picked from this map,
# never formatted from user input.
SORTABLE_DEVICE_COLUMNS = {
    "device_id": "device_id",
    "health_state": "health_state",
    "battery_pct": "battery_pct",
    "signal_strength_dbm": "signal_strength_dbm",
    "last_health_report_at": "last_health_report_at",
    "failure_rate_24h": "failure_rate_24h",
    "firmware_version": "firmware_version",
}


@dataclass(frozen=True)
class Query:
    name: str
    relations: tuple[str, ...]
    sql: str


def _q(name: str, relations: tuple[str, ...], sql: str) -> Query:
    return Query(name, relations, sql.strip())


FCT_EVENTS = "marts.fct_access_events"
AGG_FLEET = "marts.agg_access_fleet_15min"
AGG_HOURLY = "marts.agg_access_hourly"
AGG_DAILY = "marts.agg_access_daily"
STATUS = "marts.device_status_current"
HEALTH_HOURLY = "marts.fct_device_health_hourly"
DIM_DEVICE = "marts.dim_device"
ALERTS = "marts.fct_alerts"
NOTIFICATIONS = "ops.alert_notifications"
DEAD_LETTERS = "staging.stg_smart_access__dead_letters"

# The start of the current (incomplete) 15-minute window; KPIs compare whole windows.
_WINDOW_NOW = "date_bin(interval '15 minutes', now(), timestamptz '2000-01-01')"

# --- Overview --------------------------------------------------------------------

# Every KPI counts whole 15-minute windows, so the 15-minute and 24-hour figures end
# at the same moment W (the start of the current window): the last 24 hours are
# [W - 24 h, W), the previous period the same one day earlier. All of it is 192
# windows of the fleet rollup (96 a day times the catalogue's segments), whatever the
# fleet's size or history.
EVENT_KPIS = _q(
    "event_kpis",
    (AGG_FLEET,),
    f"""
    select
        coalesce(sum(w.event_count) filter (
            where w.window_start_at >= {_WINDOW_NOW} - interval '15 minutes'), 0)
            as events_15m,
        coalesce(sum(w.event_count) filter (
            where w.window_start_at >= {_WINDOW_NOW} - interval '30 minutes'
              and w.window_start_at < {_WINDOW_NOW} - interval '15 minutes'), 0)
            as events_15m_prev,
        coalesce(sum(w.event_count) filter (
            where w.window_start_at >= {_WINDOW_NOW} - interval '24 hours'), 0)
            as events_24h,
        coalesce(sum(w.event_count) filter (
            where w.window_start_at < {_WINDOW_NOW} - interval '24 hours'), 0)
            as events_24h_prev,
        coalesce(sum(w.fail_count) filter (
            where w.window_start_at >= {_WINDOW_NOW} - interval '24 hours'), 0)
            as failures_24h,
        coalesce(sum(w.fail_count) filter (
            where w.window_start_at < {_WINDOW_NOW} - interval '24 hours'), 0)
            as failures_24h_prev
    from marts.agg_access_fleet_15min as w
    where w.window_start_at >= {_WINDOW_NOW} - interval '48 hours'
      and w.window_start_at < {_WINDOW_NOW}
    """,
)

DEVICE_KPIS = _q(
    "device_kpis",
    (STATUS, HEALTH_HOURLY),
    """
    with current_state as (
        select
            count(*) filter (where is_online) as devices_online,
            count(*) filter (where battery_pct < :low_battery_pct) as low_battery
        from marts.device_status_current
        where device_status = 'active'
    ),
    previous_hour as (
        -- One index probe per active device on (device_id, hour_start_at).
        select
            count(*) filter (where h.online_ratio > 0) as devices_online,
            count(*) filter (where h.battery_min_pct < :low_battery_pct) as low_battery
        from marts.device_status_current as s
        join marts.fct_device_health_hourly as h
            on h.device_id = s.device_id
           and h.hour_start_at = date_trunc('hour', now()) - interval '1 hour'
        where s.device_status = 'active'
    )
    select
        c.devices_online,
        p.devices_online as devices_online_prev,
        c.low_battery,
        p.low_battery as low_battery_prev
    from current_state as c
    cross join previous_hour as p
    """,
)

# Open then = started by then and not ended by then; an open alert has no end yet.
# Each count is an index range (is_open; ended_at), bounded however long the history.
ALERT_KPIS = _q(
    "alert_kpis",
    (ALERTS,),
    """
    select
        (select count(*) from marts.fct_alerts where is_open) as open_alerts,
        (select count(*) from marts.fct_alerts
         where is_open and started_at <= now() - interval '24 hours')
        + (select count(*) from marts.fct_alerts
           where ended_at > now() - interval '24 hours'
             and started_at <= now() - interval '24 hours') as open_alerts_prev
    """,
)

EVENTS_PER_15MIN = _q(
    "events_per_15min",
    (AGG_FLEET,),
    f"""
    select w.window_start_at, t.event_type, sum(t.events)::bigint as events
    from marts.agg_access_fleet_15min as w
    cross join lateral (
        values ('open', w.open_count), ('close', w.close_count), ('fail', w.fail_count)
    ) as t (event_type, events)
    where w.window_start_at >= {_WINDOW_NOW} - cast(:lookback as interval)
      and w.window_start_at < {_WINDOW_NOW}
    group by w.window_start_at, t.event_type
    order by w.window_start_at, t.event_type
    """,
)

# --- Activity ----------------------------------------------------------------------
# The range starts on a whole `:range_unit` (hour or day), `:lookback` before the
# current one, and runs to now; the rollups and the events agree on it exactly.

_RANGE_START = "date_trunc(cast(:range_unit as text), now()) - cast(:lookback as interval)"
_SEGMENT_FILTER = """
          and (cardinality(cast(:regions as text[])) = 0
               or region = any(cast(:regions as text[])))
          and (cardinality(cast(:device_types as text[])) = 0
               or device_type = any(cast(:device_types as text[])))
          and (cardinality(cast(:models as text[])) = 0
               or model = any(cast(:models as text[])))"""


def _activity_series(
    name: str, relation: str, start_column: str, bucket: str, label: str, counts: dict[str, str]
) -> Query:
    """Events per time bucket and `label`, for the Activity page.

    The whole fleet's series read marts.agg_access_fleet_15min (96 windows a day
    times the catalogue's segments); one household's read `relation`, the household
    rollup, by its (household_id, bucket) index. Both branches are in the statement
    and the household parameter switches one off before it reads anything. Each
    count column is summed per bucket first and only the bucket sums are unpivoted
    into (bucket_at, label, events) rows. Buckets with no such events are left out.
    """
    sums = ",\n            ".join(f"sum({column}) as {key}" for key, column in counts.items())
    columns = ", ".join(counts.values())
    values = ", ".join(f"('{key}', b.{key})" for key in counts)
    return _q(
        name,
        (AGG_FLEET, relation),
        f"""
    with rows as (
        select {_FLEET_BUCKET} as bucket_at, {columns}
        from marts.agg_access_fleet_15min
        where cast(:household_id as text) = ''
          and window_start_at >= {_RANGE_START}{_SEGMENT_FILTER}
        union all
        select {bucket} as bucket_at, {columns}
        from {relation}
        where household_id = cast(:household_id as text)
          and {start_column} >= {_RANGE_START}{_SEGMENT_FILTER}
    ),
    buckets as (
        select
            bucket_at,
            {sums}
        from rows
        group by 1
    )
    select b.bucket_at, t.{label}, t.events::bigint as events
    from buckets as b
    cross join lateral (values {values}) as t ({label}, events)
    where t.events > 0
    order by 1, 2
    """,
    )


_FLEET_BUCKET = "date_bin(cast(:grain as interval), window_start_at, timestamptz '2000-01-01')"
_HOUR_BUCKET = "date_bin(cast(:grain as interval), hour_start_at, timestamptz '2000-01-01')"
_EVENT_TYPES = {"open": "open_count", "close": "close_count", "fail": "fail_count"}
# One `<source>_trigger_count` column per trigger source on the hourly and daily
# rollups (dbt macro trigger_sources).
_TRIGGER_SOURCES = {source: f"{source}_trigger_count" for source in TRIGGER_SOURCES}

ACTIVITY_BY_TYPE = _activity_series(
    "activity_by_type", AGG_HOURLY, "hour_start_at", _HOUR_BUCKET, "event_type", _EVENT_TYPES
)
ACTIVITY_BY_TYPE_DAILY = _activity_series(
    "activity_by_type_daily", AGG_DAILY, "day_start_at", "day_start_at", "event_type", _EVENT_TYPES
)
ACTIVITY_BY_SOURCE = _activity_series(
    "activity_by_source",
    AGG_HOURLY,
    "hour_start_at",
    _HOUR_BUCKET,
    "trigger_source",
    _TRIGGER_SOURCES,
)
ACTIVITY_BY_SOURCE_DAILY = _activity_series(
    "activity_by_source_daily",
    AGG_DAILY,
    "day_start_at",
    "day_start_at",
    "trigger_source",
    _TRIGGER_SOURCES,
)

FILTER_OPTIONS = _q(
    "filter_options",
    (DIM_DEVICE,),
    """
    select distinct 'region' as kind, coalesce(region, 'unknown') as value
    from marts.dim_device
    union
    select distinct 'device_type', device_type from marts.dim_device
    union
    select distinct 'model', model from marts.dim_device
    order by 1, 2
    """,
)

# --- Devices -----------------------------------------------------------------------

_DEVICE_ORDER = "\n".join(
    f"        case when :sort_by = '{key}' and not :descending then {column} end,\n"
    f"        case when :sort_by = '{key}' and :descending then {column} end desc,"
    for key, column in SORTABLE_DEVICE_COLUMNS.items()
)

DEVICE_STATUS = _q(
    "device_status",
    (STATUS,),
    f"""
    select device_id, household_id, region, device_type, model, device_status,
           health_state, is_online, battery_pct, signal_strength_dbm, failure_rate_24h,
           firmware_version, last_health_report_at, last_event_at
    from marts.device_status_current
    where (cast(:search as text) = ''
           or device_id ilike '%' || cast(:search as text) || '%'
           or household_id ilike '%' || cast(:search as text) || '%'
           or model ilike '%' || cast(:search as text) || '%')
      and (cardinality(cast(:health_states as text[])) = 0
           or health_state = any(cast(:health_states as text[])))
    order by
{_DEVICE_ORDER}
        device_id
    limit :row_limit
    """,
)

HEALTH_STATES = _q(
    "health_states",
    (STATUS,),
    "select distinct health_state from marts.device_status_current order by 1",
)

BATTERY_DISTRIBUTION = _q(
    "battery_distribution",
    (STATUS,),
    """
    select least(battery_pct / 10, 9) * 10 as battery_bucket_pct, count(*) as devices
    from marts.device_status_current
    where device_status = 'active' and battery_pct is not null
    group by 1
    order by 1
    """,
)

SIGNAL_DISTRIBUTION = _q(
    "signal_distribution",
    (STATUS,),
    """
    select floor(signal_strength_dbm / 10.0)::int * 10 as signal_bucket_dbm, count(*) as devices
    from marts.device_status_current
    where device_status = 'active' and signal_strength_dbm is not null
    group by 1
    order by 1
    """,
)

OFFLINE_DEVICES = _q(
    "offline_devices",
    (STATUS,),
    """
    select device_id, household_id, region, device_type, model, last_health_report_at,
           battery_pct
    from marts.device_status_current
    where device_status = 'active' and not is_online
    order by last_health_report_at nulls first, device_id
    limit 500
    """,
)

FIRMWARE_VERSIONS = _q(
    "firmware_versions",
    (STATUS,),
    """
    select firmware_version, device_type, count(*) as devices
    from marts.device_status_current
    where device_status = 'active'
    group by 1, 2
    order by 1, 2
    """,
)

# --- Device page ---------------------------------------------------------------------

DEVICE_IDS = _q(
    "device_ids",
    (DIM_DEVICE,),
    "select device_id from marts.dim_device where is_current order by 1 limit 10000",
)

DEVICE_HISTORY = _q(
    "device_history",
    (DIM_DEVICE,),
    """
    select valid_from_at, valid_to_at, is_current, household_id, device_type, model,
           firmware_version, device_status, region
    from marts.dim_device
    where device_id = :device_id
    order by valid_from_at
    """,
)

DEVICE_EVENTS = _q(
    "device_events",
    (FCT_EVENTS,),
    """
    select event_at, event_type, trigger_source, failure_reason, event_id
    from marts.fct_access_events
    where device_id = :device_id
    order by event_at desc
    limit 200
    """,
)

DEVICE_HEALTH = _q(
    "device_health",
    (HEALTH_HOURLY,),
    """
    select hour_start_at, report_count, battery_avg_pct, battery_min_pct, signal_avg_dbm,
           online_ratio
    from marts.fct_device_health_hourly
    where device_id = :device_id and hour_start_at > now() - interval '7 days'
    order by hour_start_at
    """,
)

# --- Alerts ---------------------------------------------------------------------------

_ALERT_FILTER = """
    where (cardinality(cast(:alert_types as text[])) = 0
           or alert_type = any(cast(:alert_types as text[])))
      and (cardinality(cast(:severities as text[])) = 0
           or severity = any(cast(:severities as text[])))
"""

OPEN_ALERTS_BY_TYPE = _q(
    "open_alerts_by_type",
    (ALERTS,),
    f"""
    select alert_type, severity, count(*) as open_alerts
    from marts.fct_alerts
    {_ALERT_FILTER}
      and is_open
    group by 1, 2
    order by 1, 2
    """,
)

RECENT_ALERTS = _q(
    "recent_alerts",
    (ALERTS,),
    f"""
    select alert_id, alert_type, severity, is_open, device_id, household_id, started_at,
           ended_at,
           round((extract(epoch from coalesce(ended_at, now()) - started_at) / 60)::numeric, 1)
               as duration_minutes,
           started_at > now() - cast(:lookback as interval) as in_range
    from marts.fct_alerts
    {_ALERT_FILTER}
      and (started_at > now() - cast(:lookback as interval) or is_open)
    order by started_at desc
    limit 1000
    """,
)

# What the notifier (DAG smart_access_alert_notifications) did with each alert
# transition: sent, held in quiet hours, throttled, failed, ... (newest first).
ALERT_NOTIFICATIONS = _q(
    "alert_notifications",
    (NOTIFICATIONS,),
    """
    select updated_at, status, transition, alert_type, severity, household_id, device_id,
           attempts, sent_at, last_error, alert_id
    from ops.alert_notifications
    where updated_at > now() - cast(:lookback as interval)
    order by updated_at desc
    limit 200
    """,
)

ALERT_DURATIONS = _q(
    "alert_durations",
    (ALERTS,),
    f"""
    select alert_type,
           count(*) as ended_alerts,
           round((percentile_cont(0.5) within group (
               order by extract(epoch from ended_at - started_at)) / 60)::numeric, 1)
               as median_minutes,
           round((max(extract(epoch from ended_at - started_at)) / 60)::numeric, 1)
               as max_minutes
    from marts.fct_alerts
    {_ALERT_FILTER}
      and not is_open
      and started_at > now() - cast(:lookback as interval)
    group by 1
    order by 1
    """,
)

# The (alert_type, severity) pairs that occur, one index probe each on
# fct_alerts (alert_type, severity): a skip scan, not a scan of every alert.
ALERT_FILTER_OPTIONS = _q(
    "alert_filter_options",
    (ALERTS,),
    """
    with recursive pairs as (
        (select alert_type, severity from marts.fct_alerts
         order by alert_type, severity limit 1)
        union all
        select following.alert_type, following.severity
        from pairs
        cross join lateral (
            select a.alert_type, a.severity from marts.fct_alerts as a
            where (a.alert_type, a.severity) > (pairs.alert_type, pairs.severity)
            order by a.alert_type, a.severity
            limit 1
        ) as following
    )
    select distinct 'alert_type' as kind, alert_type as value from pairs
    union
    select distinct 'severity', severity from pairs
    order by 1, 2
    """,
)

# --- Pipeline health ------------------------------------------------------------------

INGEST_THROUGHPUT = _q(
    "ingest_throughput",
    ("ops.ingest_batches",),
    """
    select
        date_bin(interval '5 minutes', committed_at, timestamptz '2000-01-01') as bucket_at,
        sum(events_valid + health_valid + devices_valid)::bigint as rows_valid,
        sum(events_invalid + health_invalid + devices_invalid)::bigint as rows_invalid,
        round((sum(events_valid + health_valid + devices_valid) / 300.0)::numeric, 2)
            as rows_per_second,
        max(latency_p50_ms) as latency_p50_ms,
        max(latency_max_ms) as latency_max_ms,
        count(*) as batches
    from ops.ingest_batches
    where committed_at > now() - cast(:lookback as interval)
    group by 1
    order by 1
    """,
)

RAW_FRESHNESS = _q(
    "raw_freshness",
    ("ops.ingest_batches",),
    """
    select
        last.committed_at as last_batch_at,
        extract(epoch from now() - last.committed_at)::bigint as seconds_since_last_batch,
        (select b.max_event_at from ops.ingest_batches as b
         where b.events_valid > 0 and b.max_event_at is not null
         order by b.max_event_at desc
         limit 1) as newest_event_at
    from (select max(committed_at) as committed_at from ops.ingest_batches) as last
    """,
)

CONSUMER_STARTS = _q(
    "consumer_starts",
    ("ops.consumer_starts",),
    """
    select consumer_group, count(*) as starts, count(distinct consumer_id) as processes,
           max(started_at) as last_start_at
    from ops.consumer_starts
    where started_at > now() - interval '1 hour'
    group by consumer_group
    order by consumer_group
    """,
)

# Partitions the consumer stopped because their stored position is not in Kafka's log.
CONSUMER_HALTS = _q(
    "consumer_halts",
    ("ops.consumer_halts",),
    """
    select detected_at, consumer_group, topic, partition, reason, stored_offset, log_start,
           log_end, log_epoch
    from ops.consumer_halts
    where resolved_at is null
    order by detected_at desc
    limit 100
    """,
)

# The latest snapshot of each table: a skip scan over the table names of
# ops.source_freshness (table_name, snapshotted_at), then one probe per table.
SOURCE_FRESHNESS = _q(
    "source_freshness",
    ("ops.source_freshness",),
    """
    with recursive tables as (
        (select table_name from ops.source_freshness order by table_name limit 1)
        union all
        select following.table_name
        from tables
        cross join lateral (
            select f.table_name from ops.source_freshness as f
            where f.table_name > tables.table_name
            order by f.table_name
            limit 1
        ) as following
    )
    select latest.table_name, latest.status, latest.max_loaded_at,
           round(latest.age_seconds::numeric, 0) as age_seconds, latest.snapshotted_at
    from tables
    cross join lateral (
        select f.table_name, f.status, f.max_loaded_at, f.age_seconds, f.snapshotted_at
        from ops.source_freshness as f
        where f.table_name = tables.table_name
        order by f.snapshotted_at desc
        limit 1
    ) as latest
    order by latest.table_name
    """,
)

CONSUMER_LAG = _q(
    "consumer_lag",
    ("ops.ingest_batches",),
    """
    select distinct on (consumer_id)
        consumer_id, consumer_group, committed_at as reported_at, consumer_lag
    from ops.ingest_batches
    where committed_at > now() - interval '1 hour'
    order by consumer_id, committed_at desc
    """,
)

PARTITION_LAG = _q(
    "partition_lag",
    ("ops.pipeline_consumer_lag",),
    """
    select consumer_group, topic, partition, committed_offset, end_offset, lag, measured_at
    from ops.pipeline_consumer_lag
    where (dag_id, run_id) = (
        select dag_id, run_id from ops.pipeline_consumer_lag
        order by measured_at desc limit 1
    )
    order by consumer_group, topic, partition
    """,
)

CONSUMER_OFFSETS = _q(
    "consumer_offsets",
    ("ops.consumer_offsets",),
    """
    select consumer_group, topic, partition, next_offset, updated_at
    from ops.consumer_offsets
    order by consumer_group, topic, partition
    """,
)

PIPELINE_RUNS = _q(
    "pipeline_runs",
    ("ops.pipeline_runs",),
    """
    select run_id, state, started_at, finished_at,
           round(duration_seconds::numeric, 1) as duration_s, gate_status,
           consumer_lag_total, round(raw_freshness_seconds::numeric, 0) as raw_freshness_s,
           models_succeeded, models_failed, tests_passed, tests_failed, failed_task, error
    from ops.pipeline_runs
    order by started_at desc
    limit 20
    """,
)

# Driven by the week's runs (ops.dbt_runs started_at, then each run's results by
# its key); OFFSET 0 keeps the planner from reading every failed test ever recorded
# through the status index and joining the runs afterwards.
FAILED_DBT_TESTS = _q(
    "failed_dbt_tests",
    ("ops.dbt_node_results", "ops.dbt_runs"),
    """
    select r.finished_at, n.node_name, n.status, n.failures, n.message, r.invocation_id
    from ops.dbt_runs as r
    cross join lateral (
        select n.node_name, n.status, n.failures, n.message
        from ops.dbt_node_results as n
        where n.invocation_id = r.invocation_id
          and n.resource_type = 'test' and n.status in ('fail', 'error', 'warn')
        offset 0
    ) as n
    where r.started_at > now() - interval '7 days'
    order by r.finished_at desc, n.node_name
    limit 50
    """,
)

DEAD_LETTERS_BY_REASON = _q(
    "dead_letters_by_reason",
    (DEAD_LETTERS,),
    """
    select error_kind, kafka_topic, count(*) as dead_letters, max(ingested_at) as last_at
    from staging.stg_smart_access__dead_letters
    where ingested_at > now() - cast(:lookback as interval)
    group by 1, 2
    order by 3 desc, 1, 2
    """,
)

DEAD_LETTER_SAMPLES = _q(
    "dead_letter_samples",
    (DEAD_LETTERS,),
    """
    select ingested_at, error_kind, error_detail, kafka_topic, kafka_partition, kafka_offset,
           kafka_key, payload_bytes
    from staging.stg_smart_access__dead_letters
    where ingested_at > now() - cast(:lookback as interval)
      and (cast(:error_kind as text) = '' or error_kind = cast(:error_kind as text))
    order by ingested_at desc
    limit :row_limit
    """,
)

# --- Kafka inspector ---------------------------------------------------------------

RECORD_LANDING = _q(
    "record_landing",
    ("ops.kafka_record_landing",),
    """
    select kafka_partition, kafka_offset, landed_in, error_kind, redriven_to, sink_next_offset
    from ops.kafka_record_landing(
        cast(:topic as text), cast(:partitions as integer[]), cast(:offsets as bigint[])
    )
    """,
)

# The sink's lag as each batch measured it when it committed (ops.ingest_batches),
# one point per minute: the worst of that minute.
GROUP_LAG_HISTORY = _q(
    "group_lag_history",
    ("ops.ingest_batches",),
    """
    select
        date_bin(interval '1 minute', committed_at, timestamptz '2000-01-01') as minute_at,
        max(consumer_lag) as lag,
        count(*) as batches
    from ops.ingest_batches
    where consumer_group = cast(:consumer_group as text)
      and committed_at > now() - cast(:lookback as interval)
      and consumer_lag is not null
    group by 1
    order by 1
    """,
)

DEAD_LETTERS_OVER_TIME = _q(
    "dead_letters_over_time",
    (DEAD_LETTERS,),
    """
    select
        date_trunc('hour', ingested_at) as hour_at,
        error_kind,
        count(*) as dead_letters
    from staging.stg_smart_access__dead_letters
    where ingested_at > now() - cast(:lookback as interval)
    group by 1, 2
    order by 1, 2
    """,
)
