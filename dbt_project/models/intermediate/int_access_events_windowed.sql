{{
    config(
        materialized='incremental',
        unique_key=['device_id', 'window_start_at'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['device_id', 'window_start_at']},
            {'columns': ['household_id', 'window_start_at']},
            {'columns': ['window_start_at']},
            {'columns': ['transformed_at']},
        ],
    )
}}
-- Access events counted per device, 15-minute window (UTC, aligned to the hour) and
-- the attributes the rollups group by: household (as the event reported it), region,
-- device type and model valid at event time ('unknown' when the registry does not
-- say), and per trigger source (`<source>_trigger_count`, see macro trigger_sources).
-- Usually one row per device-window; two when the device's registry version
-- changed inside the window. The marts agg_access_15min / _hourly / _daily are
-- rollups of this model, so only this one reads fct_access_events.
-- Incremental: exactly the device-windows touched by events written to the fact
-- since this model's last run are rebuilt, every group of them together, from all
-- of their events however late those arrived. Each rebuilt device-window is
-- therefore complete among the rows carrying this run's transformed_at.

with

{% if is_incremental() %}

touched_windows as (

    select distinct
        events.device_id,
        {{ window_start_15min('events.event_at') }} as window_start_at

    from {{ ref('fct_access_events') }} as events
    where {{ written_since_previous_build('events.transformed_at') }}

),

events as (

    select
        fct.device_id,
        touched_windows.window_start_at,
        fct.household_id,
        fct.region,
        fct.device_type,
        fct.model,
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
        fct.household_id,
        fct.region,
        fct.device_type,
        fct.model,
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
        events.household_id,
        coalesce(events.region, 'unknown') as region,
        coalesce(events.device_type, 'unknown') as device_type,
        coalesce(events.model, 'unknown') as model,
        count(*) as event_count,
        count(*) filter (where events.event_type = 'open') as open_count,
        count(*) filter (where events.event_type = 'close') as close_count,
        count(*) filter (where events.event_type = 'fail') as fail_count,
        {%- for source in trigger_sources() %}
        count(*) filter (where events.trigger_source = '{{ source }}')
            as {{ source }}_trigger_count,
        {%- endfor %}
        array_agg(distinct events.trigger_source order by events.trigger_source)
            as trigger_sources,
        max(events.event_at) as last_event_at,
        {{ run_started_at_ts() }} as transformed_at

    from events
    group by 1, 2, 3, 4, 5, 6

)

select * from aggregated
