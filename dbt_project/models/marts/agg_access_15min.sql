{{
    config(
        materialized='incremental',
        unique_key=['device_id', 'window_start_at'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['device_id', 'window_start_at'], 'unique': True},
            {'columns': ['window_start_at']},
        ],
    )
}}
-- Per device and 15-minute window (UTC, aligned to the hour). Incremental: exactly
-- the windows touched by events written to fct_access_events since this model's
-- last run are recomputed from all of their events, however late those arrived.

with

{% if is_incremental() %}

touched_windows as (

    select distinct
        events.device_id,
        {{ window_start_15min('events.event_at') }} as window_start_at

    from {{ ref('fct_access_events') }} as events
    where events.transformed_at > (
        select coalesce(max(transformed_at), timestamptz '-infinity') from {{ this }}
    )

),

events as (

    select
        fct.device_id,
        touched_windows.window_start_at,
        fct.event_type,
        fct.trigger_source,
        fct.event_at

    from touched_windows
    inner join {{ ref('fct_access_events') }} as fct
        on fct.device_id = touched_windows.device_id
        and fct.event_at >= touched_windows.window_start_at
        and fct.event_at < touched_windows.window_start_at + interval '15 minutes'

),

{% else %}

events as (

    select
        fct.device_id,
        {{ window_start_15min('fct.event_at') }} as window_start_at,
        fct.event_type,
        fct.trigger_source,
        fct.event_at

    from {{ ref('fct_access_events') }} as fct

),

{% endif %}

aggregated as (

    select
        events.device_id,
        events.window_start_at,
        events.window_start_at + interval '15 minutes' as window_end_at,
        count(*) as event_count,
        count(*) filter (where events.event_type = 'open') as open_count,
        count(*) filter (where events.event_type = 'close') as close_count,
        count(*) filter (where events.event_type = 'fail') as fail_count,
        round(
            count(*) filter (where events.event_type = 'fail')::numeric / count(*), 6
        ) as failure_rate,
        count(distinct events.trigger_source) as distinct_trigger_count,
        max(events.event_at) as last_event_at,
        {{ run_started_at_ts() }} as transformed_at

    from events
    group by events.device_id, events.window_start_at

)

select * from aggregated
