{{
    config(
        materialized='incremental',
        unique_key=['hour_start_at', 'household_id'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['household_id', 'hour_start_at', 'region', 'device_type', 'model'], 'unique': True},
            {'columns': ['hour_start_at']},
            {'columns': ['transformed_at']},
        ],
    )
}}
-- Hourly rollup by household, region, device type and model (the attributes valid
-- when each event happened; unknown ones read 'unknown'), added up from the
-- 15-minute groups of int_access_events_windowed (windows nest in hours: both are
-- aligned to UTC hours). Incremental per (hour, household): every group of a touched
-- household-hour is rebuilt together, so an event whose device attributes changed
-- leaves its old group too. Event counts per trigger source (`<source>_trigger_count`)
-- feed the dashboard's Activity page, so it never scans the fact. The unique_key is the delete scope; the grain is unique
-- on all five columns (a unique index).

with

{% if is_incremental() %}

-- The model is read by index in each CTE (no shared CTE over it, which PostgreSQL
-- would materialize in full - the whole history - on every build).
touched as (

    select distinct
        {{ hour_start('int_windows.window_start_at') }} as hour_start_at,
        int_windows.household_id

    from {{ ref('int_access_events_windowed') }} as int_windows
    where {{ written_since_previous_build('int_windows.transformed_at') }}

),

windows as (

    select int_windows.*, touched.hour_start_at
    from touched
    inner join {{ ref('int_access_events_windowed') }} as int_windows
        on int_windows.household_id = touched.household_id
        and int_windows.window_start_at >= touched.hour_start_at
        and int_windows.window_start_at < touched.hour_start_at + interval '1 hour'

),

{% else %}

windows as (

    select
        int_windows.*,
        {{ hour_start('int_windows.window_start_at') }} as hour_start_at
    from {{ ref('int_access_events_windowed') }} as int_windows

),

{% endif %}

counts as (

    select
        windows.hour_start_at,
        windows.household_id,
        windows.region,
        windows.device_type,
        windows.model,
        sum(windows.event_count)::bigint as event_count,
        sum(windows.open_count)::bigint as open_count,
        sum(windows.close_count)::bigint as close_count,
        sum(windows.fail_count)::bigint as fail_count,
        {%- for source in trigger_sources() %}
        sum(windows.{{ source }}_trigger_count)::bigint as {{ source }}_trigger_count,
        {%- endfor %}
        count(distinct windows.device_id) as active_device_count

    from windows
    group by 1, 2, 3, 4, 5

),

triggers as (

    select
        windows.hour_start_at,
        windows.household_id,
        windows.region,
        windows.device_type,
        windows.model,
        array_agg(distinct trigger_source order by trigger_source) as trigger_sources

    from windows
    cross join lateral unnest(windows.trigger_sources) as trigger_source
    group by 1, 2, 3, 4, 5

),

aggregated as (

    select
        counts.hour_start_at,
        counts.household_id,
        counts.region,
        counts.device_type,
        counts.model,
        counts.event_count,
        counts.open_count,
        counts.close_count,
        counts.fail_count,
        {%- for source in trigger_sources() %}
        counts.{{ source }}_trigger_count,
        {%- endfor %}
        round(counts.fail_count::numeric / counts.event_count, 6) as failure_rate,
        cardinality(triggers.trigger_sources)::bigint as distinct_trigger_count,
        triggers.trigger_sources,
        counts.active_device_count,
        {{ run_started_at_ts() }} as transformed_at

    from counts
    inner join triggers
        on triggers.hour_start_at = counts.hour_start_at
        and triggers.household_id = counts.household_id
        and triggers.region = counts.region
        and triggers.device_type = counts.device_type
        and triggers.model = counts.model

)

select * from aggregated
