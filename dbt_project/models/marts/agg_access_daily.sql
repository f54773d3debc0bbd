{{
    config(
        materialized='incremental',
        unique_key=['day_start_at', 'household_id'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['household_id', 'day_start_at', 'region', 'device_type', 'model'], 'unique': True},
            {'columns': ['day_start_at']},
        ],
    )
}}
-- Daily (UTC) rollup by household, region, device type and model, built from the
-- hourly rollup: counts (per event type and per trigger source) add up; distinct triggers are the union of the hours'
-- trigger sets. Incremental per touched (day, household), like the hourly one.
-- active_device_count is not additive across hours, so it is not carried here.

with

{% if is_incremental() %}

-- The hourly mart is read by index in each CTE (no shared CTE over it, which
-- PostgreSQL would materialize in full - the whole history - on every build).
touched as (

    select distinct
        {{ day_start('hourly.hour_start_at') }} as day_start_at,
        hourly.household_id
    from {{ ref('agg_access_hourly') }} as hourly
    where {{ written_since_previous_build('hourly.transformed_at') }}

),

hours as (

    select hourly.*, touched.day_start_at
    from touched
    inner join {{ ref('agg_access_hourly') }} as hourly
        on hourly.household_id = touched.household_id
        and hourly.hour_start_at >= touched.day_start_at
        and hourly.hour_start_at < touched.day_start_at + interval '1 day'

),

{% else %}

hours as (

    select hourly.*, {{ day_start('hourly.hour_start_at') }} as day_start_at
    from {{ ref('agg_access_hourly') }} as hourly

),

{% endif %}

counts as (

    select
        hours.day_start_at,
        hours.household_id,
        hours.region,
        hours.device_type,
        hours.model,
        sum(hours.event_count) as event_count,
        sum(hours.open_count) as open_count,
        sum(hours.close_count) as close_count,
        sum(hours.fail_count) as fail_count,
        {%- for source in trigger_sources() %}
        sum(hours.{{ source }}_trigger_count) as {{ source }}_trigger_count
            {%- if not loop.last %},{% endif %}
        {%- endfor %}

    from hours
    group by 1, 2, 3, 4, 5

),

triggers as (

    select
        hours.day_start_at,
        hours.household_id,
        hours.region,
        hours.device_type,
        hours.model,
        array_agg(distinct trigger_source order by trigger_source) as trigger_sources

    from hours
    cross join lateral unnest(hours.trigger_sources) as trigger_source
    group by 1, 2, 3, 4, 5

),

final as (

    select
        counts.day_start_at,
        counts.household_id,
        counts.region,
        counts.device_type,
        counts.model,
        counts.event_count::bigint as event_count,
        counts.open_count::bigint as open_count,
        counts.close_count::bigint as close_count,
        counts.fail_count::bigint as fail_count,
        {%- for source in trigger_sources() %}
        counts.{{ source }}_trigger_count::bigint as {{ source }}_trigger_count,
        {%- endfor %}
        round(counts.fail_count / counts.event_count, 6) as failure_rate,
        cardinality(triggers.trigger_sources) as distinct_trigger_count,
        triggers.trigger_sources,
        {{ run_started_at_ts() }} as transformed_at

    from counts
    inner join triggers
        on triggers.day_start_at = counts.day_start_at
        and triggers.household_id = counts.household_id
        and triggers.region = counts.region
        and triggers.device_type = counts.device_type
        and triggers.model = counts.model

)

select * from final
