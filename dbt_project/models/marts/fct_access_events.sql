{{
    config(
        materialized='incremental',
        incremental_strategy='partitioned_append',
        unique_key=['event_id', 'event_at'],
        full_refresh=false,
        on_schema_change='ignore',
        post_hook="{{ analyze_appended_partitions() }}",
    )
}}
-- Partitioned by event day (UTC), append-only: the table, its partitions' layout and
-- its local indexes come from migration 0051; the strategy (macros/
-- partitioned_append.sql) creates the days' partitions ahead and appends. dbt must
-- never replace it with a plain table, so `full_refresh=false` and a --full-refresh
-- build takes the full branch below and empties the table first (flags.FULL_REFRESH).
-- Indexes, all local to a day: (event_at, event_id) - the key (migration 0052), time
-- first so a build's rows land in the last stretch of a day; a resend carries the
-- same event_at, so it is found in one partition - (device_id, event_at), the order
-- a build appends in, for the per-device readers (int_access_events_windowed's and
-- int_door_sessions' touched windows, fct_alerts, device_status_current's last
-- event, the dashboard's device page) and a b-tree on transformed_at for "rows
-- written since" (migration 0054).
-- depends_on: {{ ref('stg_smart_access__device_registry') }}
-- One row per unique access event with the device attributes valid when it happened.
-- Incremental: the events landed in this build's commit-safe window, plus the events
-- of devices whose registry changed in it, from the change's start on: their
-- attributes move.

with

{% if is_incremental() and not flags.FULL_REFRESH %}

-- Exactly the staged events landed in this build's commit-safe window (see
-- smart_access.watermarks): each raw row is read by one successful build, and an
-- event by the build that reads its first landed copy, so nothing is re-read by a
-- lookback. Rewriting a row (a retried build) updates it in place.
new_events as (

    select events.*
    from {{ ref('stg_smart_access__access_events') }} as events
    where {{ ingested_window('access_events', 'events.ingested_at') }}

),

changed_devices as (

    -- A change that became a device's first version reaches back to -infinity.
    select
        changes.device_id,
        case
            when min(changes.updated_at) <= min(versions.valid_from_at)
                then timestamptz '-infinity'
            else min(changes.updated_at)
        end as reprocess_from_at

    from {{ ref('stg_smart_access__device_registry') }} as changes
    inner join {{ ref('int_device_versions_ranged') }} as versions
        on versions.device_id = changes.device_id
    where {{ ingested_window('device_registry', 'changes.ingested_at') }}
    group by changes.device_id

),

reprocessed_events as (

    select
        existing.event_id,
        existing.device_id,
        existing.household_id,
        existing.event_at,
        existing.event_type,
        existing.trigger_source,
        existing.user_id,
        existing.failure_reason,
        existing.kafka_topic,
        existing.kafka_partition,
        existing.kafka_offset,
        existing.ingested_at

    from {{ this }} as existing
    inner join changed_devices
        on changed_devices.device_id = existing.device_id
        and existing.event_at >= changed_devices.reprocess_from_at
    where not exists (
        select 1 from new_events where new_events.event_id = existing.event_id
    )

),

events as (

    select
        new_events.event_id,
        new_events.device_id,
        new_events.household_id,
        new_events.event_at,
        new_events.event_type,
        new_events.trigger_source,
        new_events.user_id,
        new_events.failure_reason,
        new_events.kafka_topic,
        new_events.kafka_partition,
        new_events.kafka_offset,
        new_events.ingested_at
    from new_events

    union all

    select * from reprocessed_events

),

{% else %}

events as (

    select events.*
    from {{ ref('stg_smart_access__access_events') }} as events
    where {{ ingested_window('access_events', 'events.ingested_at', lower=false) }}

),

{% endif %}

versions as (

    select * from {{ ref('int_device_versions_ranged') }}

),

joined as (

    select
        events.event_id,
        events.device_id,
        -- a v0 event has no household: the registry's, when it knows the device
        case
            when events.household_id = 'unknown' then coalesce(versions.household_id, 'unknown')
            else events.household_id
        end as household_id,
        events.event_at,
        events.event_type,
        events.trigger_source,
        events.user_id,
        events.failure_reason,
        versions.device_version_id,
        versions.device_type,
        versions.model,
        versions.firmware_version,
        versions.region,
        events.kafka_topic,
        events.kafka_partition,
        events.kafka_offset,
        events.ingested_at,
        {{ run_started_at_ts() }} as transformed_at,
        -- appended once; the strategy sets it when a row is written again in place,
        -- and a full refresh rewrites every row (int_access_events_windowed recounts)
        {{ 'true' if flags.FULL_REFRESH else 'false' }} as is_rewritten

    from events
    left join versions
        on versions.device_id = events.device_id
        and events.event_at >= versions.effective_from_at
        and events.event_at < versions.effective_to_at

)

select * from joined
