{{
    config(
        materialized='incremental',
        unique_key=['window_start_at'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['window_start_at', 'region', 'device_type', 'model'], 'unique': True},
            {'columns': ['transformed_at']},
        ],
    )
}}
-- The whole fleet per 15-minute window (UTC, aligned to the hour) by region, device
-- type and model (attributes valid at event time; 'unknown' when the registry does
-- not say): the rows of int_access_events_windowed added up across devices and
-- households. A day is 96 windows times the segments the catalogue has, however many
-- devices and events there are, so the dashboard's Overview KPIs and its Activity
-- series (unless they pick one household) read a bounded range of it.
-- Incremental per touched window: every segment of a window any device-window of
-- this build touched is rebuilt from all of that window's groups, by the windowed
-- model's window_start_at index.

with

{% if is_incremental() %}

touched as (

    select distinct int_windows.window_start_at
    from {{ ref('int_access_events_windowed') }} as int_windows
    where {{ written_since_previous_build('int_windows.transformed_at') }}

),

windows as (

    select int_windows.*
    from touched
    inner join {{ ref('int_access_events_windowed') }} as int_windows
        on int_windows.window_start_at = touched.window_start_at

),

{% else %}

windows as (

    select int_windows.*
    from {{ ref('int_access_events_windowed') }} as int_windows

),

{% endif %}

final as (

    select
        windows.window_start_at,
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
        {{ run_started_at_ts() }} as transformed_at

    from windows
    group by 1, 2, 3, 4

)

select * from final
