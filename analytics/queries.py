"""Every SQL statement the dashboard runs, in one place.

The marts are built by dbt (dbt_project/models/marts) and the ops tables by the
migrations; if a column is renamed there, this is the only file to change. Each
query names the relations it reads so an empty database can be explained to the
user. Parameters are always bound (`:name`), never formatted into the text.

Columns relied on (relation: columns)
- marts.fct_access_events: event_id, event_at, device_id, household_id, event_type,
  trigger_source, failure_reason, region, device_type, model
- marts.agg_access_15min: window_start_at, household_id, region, device_type, model,
  event_type, trigger_source, event_count
- marts.device_status_current: device_id, household_id, region, device_type, model,
  firmware_version, status, battery_pct, signal_strength_dbm, is_online,
  last_reported_at, last_event_at, health_state
- marts.fct_device_health_hourly: device_id, hour_at, report_count, battery_pct_avg,
  battery_pct_min, signal_strength_dbm_avg, is_online
- marts.dim_device (SCD2): device_id, household_id, device_type, model, firmware_version,
  status, region, valid_from, valid_to, is_current
- marts.dim_household: household_id, region
- marts.fct_alerts: alert_id, device_id, household_id, alert_type, severity, opened_at,
  resolved_at
- ops.ingest_batches, ops.consumer_offsets: as in stack/migrations/0002
- ops.pipeline_runs: dag_id, run_id, state, started_at, finished_at
- ops.dbt_results: run_id, unique_id, resource_type, status, failures, message,
  execution_time_s, finished_at
- raw.dead_letters: as in stack/migrations/0002 (read grant in migration 0040)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LOW_BATTERY_PCT", "SORTABLE_DEVICE_COLUMNS", "Query"]

LOW_BATTERY_PCT = 20

# Columns the device table may be sorted by: the ORDER BY is picked from this map,
# never formatted from user input.
SORTABLE_DEVICE_COLUMNS = {
    "device_id": "device_id",
    "battery_pct": "battery_pct",
    "signal_strength_dbm": "signal_strength_dbm",
    "last_reported_at": "last_reported_at",
    "health_state": "health_state",
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
AGG_15MIN = "marts.agg_access_15min"
STATUS = "marts.device_status_current"
HEALTH_HOURLY = "marts.fct_device_health_hourly"
DIM_DEVICE = "marts.dim_device"
DIM_HOUSEHOLD = "marts.dim_household"
ALERTS = "marts.fct_alerts"

# --- Overview --------------------------------------------------------------------

EVENT_KPIS = _q(
    "event_kpis",
    (FCT_EVENTS,),
    """
    select
        count(*) filter (where event_at > now() - interval '15 minutes') as events_15m,
        count(*) filter (where event_at > now() - interval '30 minutes'
                           and event_at <= now() - interval '15 minutes') as events_15m_prev,
        count(*) filter (where event_at > now() - interval '24 hours') as events_24h,
        count(*) filter (where event_at <= now() - interval '24 hours') as events_24h_prev,
        count(*) filter (where event_at > now() - interval '24 hours'
                           and event_type = 'fail') as failures_24h,
        count(*) filter (where event_at <= now() - interval '24 hours'
                           and event_type = 'fail') as failures_24h_prev
    from marts.fct_access_events
    where event_at > now() - interval '48 hours' and event_at <= now()
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
        where status = 'active'
    ),
    previous_hour as (
        select
            count(*) filter (where is_online) as devices_online,
            count(*) filter (where battery_pct_min < :low_battery_pct) as low_battery
        from marts.fct_device_health_hourly
        where hour_at = date_trunc('hour', now()) - interval '1 hour'
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

ALERT_KPIS = _q(
    "alert_kpis",
    (ALERTS,),
    """
    select
        count(*) filter (where resolved_at is null) as open_alerts,
        count(*) filter (
            where opened_at <= now() - interval '24 hours'
              and (resolved_at is null or resolved_at > now() - interval '24 hours')
        ) as open_alerts_prev
    from marts.fct_alerts
    """,
)

EVENTS_PER_15MIN = _q(
    "events_per_15min",
    (AGG_15MIN,),
    """
    select window_start_at, event_type, sum(event_count)::bigint as events
    from marts.agg_access_15min
    where window_start_at > now() - cast(:lookback as interval)
    group by window_start_at, event_type
    order by window_start_at, event_type
    """,
)

# --- Activity ----------------------------------------------------------------------

_ACTIVITY_FILTER = """
    where window_start_at >= now() - cast(:lookback as interval)
      and (cardinality(cast(:regions as text[])) = 0 or region = any(cast(:regions as text[])))
      and (cardinality(cast(:device_types as text[])) = 0
           or device_type = any(cast(:device_types as text[])))
      and (cardinality(cast(:models as text[])) = 0 or model = any(cast(:models as text[])))
      and (cast(:household_id as text) = '' or household_id = cast(:household_id as text))
"""

ACTIVITY_BY_TYPE = _q(
    "activity_by_type",
    (AGG_15MIN,),
    f"""
    select
        date_bin(cast(:grain as interval), window_start_at, timestamptz '2000-01-01') as bucket_at,
        event_type,
        sum(event_count)::bigint as events
    from marts.agg_access_15min
    {_ACTIVITY_FILTER}
    group by 1, 2
    order by 1, 2
    """,
)

ACTIVITY_BY_SOURCE = _q(
    "activity_by_source",
    (AGG_15MIN,),
    f"""
    select
        date_bin(cast(:grain as interval), window_start_at, timestamptz '2000-01-01') as bucket_at,
        trigger_source,
        sum(event_count)::bigint as events
    from marts.agg_access_15min
    {_ACTIVITY_FILTER}
    group by 1, 2
    order by 1, 2
    """,
)

ACTIVITY_FILTER_OPTIONS = _q(
    "activity_filter_options",
    (DIM_DEVICE,),
    """
    select distinct 'region' as kind, region as value
    from marts.dim_device where is_current and region is not null
    union
    select distinct 'device_type', device_type from marts.dim_device where is_current
    union
    select distinct 'model', model from marts.dim_device where is_current
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
    select device_id, household_id, region, device_type, model, firmware_version, status,
           health_state, is_online, battery_pct, signal_strength_dbm,
           last_reported_at, last_event_at
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
    where status = 'active'
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
    where status = 'active'
    group by 1
    order by 1
    """,
)

OFFLINE_DEVICES = _q(
    "offline_devices",
    (STATUS,),
    """
    select device_id, household_id, region, device_type, model, last_reported_at,
           battery_pct
    from marts.device_status_current
    where status = 'active' and not is_online
    order by last_reported_at nulls first, device_id
    limit 500
    """,
)

FIRMWARE_VERSIONS = _q(
    "firmware_versions",
    (STATUS,),
    """
    select firmware_version, device_type, count(*) as devices
    from marts.device_status_current
    where status = 'active'
    group by 1, 2
    order by 1, 2
    """,
)

# --- Device page ---------------------------------------------------------------------

DEVICE_IDS = _q(
    "device_ids",
    (DIM_DEVICE,),
    "select distinct device_id from marts.dim_device order by 1 limit 5000",
)

DEVICE_HISTORY = _q(
    "device_history",
    (DIM_DEVICE,),
    """
    select valid_from, valid_to, is_current, household_id, device_type, model,
           firmware_version, status, region
    from marts.dim_device
    where device_id = :device_id
    order by valid_from
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
    select hour_at, report_count, battery_pct_avg, battery_pct_min,
           signal_strength_dbm_avg, is_online
    from marts.fct_device_health_hourly
    where device_id = :device_id and hour_at > now() - interval '7 days'
    order by hour_at
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
      and resolved_at is null
    group by 1, 2
    order by 1, 2
    """,
)

RECENT_ALERTS = _q(
    "recent_alerts",
    (ALERTS,),
    f"""
    select alert_id, alert_type, severity, device_id, household_id, opened_at, resolved_at,
           resolved_at is null as is_open,
           round((extract(epoch from coalesce(resolved_at, now()) - opened_at) / 60)::numeric, 1)
               as duration_minutes
    from marts.fct_alerts
    {_ALERT_FILTER}
      and (opened_at > now() - cast(:lookback as interval) or resolved_at is null)
    order by opened_at desc
    limit 1000
    """,
)

ALERT_DURATIONS = _q(
    "alert_durations",
    (ALERTS,),
    f"""
    select alert_type,
           count(*) as resolved_alerts,
           round((percentile_cont(0.5) within group (
               order by extract(epoch from resolved_at - opened_at)) / 60)::numeric, 1)
               as median_minutes,
           round((max(extract(epoch from resolved_at - opened_at)) / 60)::numeric, 1)
               as max_minutes
    from marts.fct_alerts
    {_ALERT_FILTER}
      and resolved_at is not null
      and opened_at > now() - cast(:lookback as interval)
    group by 1
    order by 1
    """,
)

ALERT_FILTER_OPTIONS = _q(
    "alert_filter_options",
    (ALERTS,),
    """
    select distinct 'alert_type' as kind, alert_type as value from marts.fct_alerts
    union
    select distinct 'severity', severity from marts.fct_alerts
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
        max(committed_at) as last_batch_at,
        extract(epoch from now() - max(committed_at))::bigint as seconds_since_last_batch,
        max(max_event_at) filter (where events_valid > 0) as last_event_at,
        max(committed_at) filter (where health_valid > 0) as last_health_batch_at,
        max(committed_at) filter (where devices_valid > 0) as last_registry_batch_at
    from ops.ingest_batches
    """,
)

CONSUMER_LAG = _q(
    "consumer_lag",
    ("ops.ingest_batches",),
    """
    select distinct on (consumer_id)
        consumer_id, consumer_group, committed_at, consumer_lag
    from ops.ingest_batches
    where committed_at > now() - interval '1 hour'
    order by consumer_id, committed_at desc
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
    select run_id, dag_id, state, started_at, finished_at,
           round(extract(epoch from finished_at - started_at)::numeric, 1) as duration_s
    from ops.pipeline_runs
    order by started_at desc
    limit 20
    """,
)

DBT_TEST_RESULTS = _q(
    "dbt_test_results",
    ("ops.dbt_results",),
    """
    select run_id,
           count(*) filter (where status = 'pass') as tests_passed,
           count(*) filter (where status in ('fail', 'error')) as tests_failed,
           count(*) filter (where status = 'warn') as tests_warned,
           max(finished_at) as finished_at
    from ops.dbt_results
    where resource_type = 'test'
    group by run_id
    order by max(finished_at) desc
    limit 20
    """,
)

FAILED_DBT_TESTS = _q(
    "failed_dbt_tests",
    ("ops.dbt_results",),
    """
    select run_id, unique_id, status, failures, message, finished_at
    from ops.dbt_results
    where resource_type = 'test' and status in ('fail', 'error', 'warn')
    order by finished_at desc
    limit 50
    """,
)

DEAD_LETTERS_BY_REASON = _q(
    "dead_letters_by_reason",
    ("raw.dead_letters",),
    """
    select error_kind, kafka_topic, count(*) as dead_letters, max(_ingested_at) as last_at
    from raw.dead_letters
    where _ingested_at > now() - cast(:lookback as interval)
    group by 1, 2
    order by 3 desc, 1, 2
    """,
)

DEAD_LETTER_SAMPLES = _q(
    "dead_letter_samples",
    ("raw.dead_letters",),
    """
    select _ingested_at as ingested_at, error_kind, error_detail, kafka_topic,
           kafka_partition, kafka_offset,
           encode(kafka_key, 'escape') as key,
           left(encode(payload, 'escape'), 500) as payload
    from raw.dead_letters
    where _ingested_at > now() - cast(:lookback as interval)
      and (cast(:error_kind as text) = '' or error_kind = cast(:error_kind as text))
    order by _ingested_at desc
    limit :row_limit
    """,
)
