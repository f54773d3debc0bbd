{{
    config(
        materialized='incremental',
        unique_key=['hour_start_at', 'household_id'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['hour_start_at', 'household_id']},
            {'columns': ['transformed_at']},
        ],
    )
}}
-- Hourly rollup by household, region, device type and model (the attributes valid
-- when each event happened; unknown ones read 'unknown'). Incremental per (hour,
-- household): every group of a touched household-hour is rebuilt together, so an
-- event whose device attributes changed leaves its old group too. The unique_key
-- is the delete scope; the grain is unique on all five columns (tested).

with

{% if is_incremental() %}

touched as (

    select distinct
        {{ hour_start('events.event_at') }} as hour_start_at,
        events.household_id

    from {{ ref('fct_access_events') }} as events
    where events.transformed_at > (
        select coalesce(max(transformed_at), timestamptz '-infinity') from {{ this }}
    )

),

events as (

    select fct.*, touched.hour_start_at
    from touched
    inner join {{ ref('fct_access_events') }} as fct
        on fct.household_id = touched.household_id
        and fct.event_at >= touched.hour_start_at
        and fct.event_at < touched.hour_start_at + interval '1 hour'

),

{% else %}

events as (

    select fct.*, {{ hour_start('fct.event_at') }} as hour_start_at
    from {{ ref('fct_access_events') }} as fct

),

{% endif %}

aggregated as (

    select
        events.hour_start_at,
        events.household_id,
        coalesce(events.region, 'unknown') as region,
        coalesce(events.device_type, 'unknown') as device_type,
        coalesce(events.model, 'unknown') as model,
        count(*) as event_count,
        count(*) filter (where events.event_type = 'open') as open_count,
        count(*) filter (where events.event_type = 'close') as close_count,
        count(*) filter (where events.event_type = 'fail') as fail_count,
        round(
            count(*) filter (where events.event_type = 'fail')::numeric / count(*), 6
        ) as failure_rate,
        count(distinct events.trigger_source) as distinct_trigger_count,
        array_agg(distinct events.trigger_source order by events.trigger_source)
            as trigger_sources,
        count(distinct events.device_id) as active_device_count,
        {{ run_started_at_ts() }} as transformed_at

    from events
    group by 1, 2, 3, 4, 5

)

select * from aggregated
