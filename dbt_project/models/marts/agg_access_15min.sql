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
-- Per device and 15-minute window (UTC, aligned to the hour): the device's groups in
-- int_access_events_windowed added up. Incremental: that model rebuilds a touched
-- device-window whole (all its groups carry the same transformed_at), so the windows
-- among its rows written since this model's last run are complete and are simply
-- re-added here - however late their events arrived.

with

windowed as (

    select int_windows.*
    from {{ ref('int_access_events_windowed') }} as int_windows
    {% if is_incremental() %}
    where {{ written_since_previous_build('int_windows.transformed_at') }}
    {% endif %}

),

counts as (

    -- One pass: each windowed row once per trigger source (ordinality 1 carries its
    -- counts), so the distinct sources and the sums come from one aggregation - no
    -- self-join, whose plan a stale row estimate for the fresh rows can turn
    -- quadratic.
    select
        windowed.device_id,
        windowed.window_start_at,
        sum(windowed.event_count) filter (where coalesce(sources.position, 1) = 1)::bigint
            as event_count,
        sum(windowed.open_count) filter (where coalesce(sources.position, 1) = 1)::bigint
            as open_count,
        sum(windowed.close_count) filter (where coalesce(sources.position, 1) = 1)::bigint
            as close_count,
        sum(windowed.fail_count) filter (where coalesce(sources.position, 1) = 1)::bigint
            as fail_count,
        count(distinct sources.trigger_source) as distinct_trigger_count,
        max(windowed.last_event_at) as last_event_at

    from windowed
    left join lateral unnest(windowed.trigger_sources) with ordinality
        as sources (trigger_source, position) on true
    group by 1, 2

),

aggregated as (

    select
        counts.device_id,
        counts.window_start_at,
        counts.window_start_at + interval '15 minutes' as window_end_at,
        counts.event_count,
        counts.open_count,
        counts.close_count,
        counts.fail_count,
        round(counts.fail_count::numeric / counts.event_count, 6) as failure_rate,
        counts.distinct_trigger_count,
        counts.last_event_at,
        {{ run_started_at_ts() }} as transformed_at

    from counts

)

select * from aggregated
