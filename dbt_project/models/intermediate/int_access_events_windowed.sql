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
-- Incremental: the device-windows touched by events written to the fact since the
-- previous build, and only those. Every count here is a sum, so a window whose new
-- events were all appended for the first time (is_rewritten false: the common case,
-- late events included) adds them to its stored row - its other events are not read
-- again, however many there are. A window holding a row the fact wrote again in
-- place (a retried build, a registry change moving its attributes, a full refresh)
-- is recounted from all of its events. A stored row's transformed_at says what it
-- holds: every fact row of its window written at or before that stamp, so a rerun
-- never adds an event twice.

{#- The counts of a set of fact rows `fct` (grouped by the caller), one list for the
    written rows and the recounted windows. -#}
{%- set event_counts -%}
        count(*) as event_count,
        count(*) filter (where fct.event_type = 'open') as open_count,
        count(*) filter (where fct.event_type = 'close') as close_count,
        count(*) filter (where fct.event_type = 'fail') as fail_count,
        {%- for source in trigger_sources() %}
        count(*) filter (where fct.trigger_source = '{{ source }}')
            as {{ source }}_trigger_count,
        {%- endfor %}
        max(fct.event_at) as last_event_at
{%- endset -%}

{%- set group_columns -%}
        coalesce(fct.region, 'unknown') as region,
        coalesce(fct.device_type, 'unknown') as device_type,
        coalesce(fct.model, 'unknown') as model
{%- endset -%}

{%- set count_names = ['event_count', 'open_count', 'close_count', 'fail_count'] -%}
{%- for source in trigger_sources() -%}
    {%- do count_names.append(source ~ '_trigger_count') -%}
{%- endfor -%}
{#- A stored row's columns before its trigger_sources and stamp. -#}
{%- set row_columns = ['device_id', 'window_start_at', 'household_id', 'region', 'device_type',
    'model'] + count_names + ['last_event_at'] %}

with

{% if is_incremental() %}

-- The fact rows written since the previous build, counted in one pass: a few rows a
-- device-window (one a stamp and attribute group) however many events they hold.
written as (

    select
        fct.device_id,
        {{ window_start_15min('fct.event_at') }} as window_start_at,
        fct.household_id,
        {{ group_columns }},
        fct.transformed_at,
        -- unknown (a fixture without the column) counts as rewritten: recount
        coalesce(fct.is_rewritten, true) as is_rewritten,
        {{ event_counts }}

    from {{ ref('fct_access_events') }} as fct
    where {{ written_since_previous_build('fct.transformed_at') }}
    group by 1, 2, 3, 4, 5, 6, 7, 8

),

counted as (

    select
        stored.device_id,
        stored.window_start_at,
        max(stored.transformed_at) as counted_through_at

    from {{ this }} as stored
    inner join (select distinct device_id, window_start_at from written) as touched
        on touched.device_id = stored.device_id
        and touched.window_start_at = stored.window_start_at
    group by stored.device_id, stored.window_start_at

),

uncounted as (

    select
        written.*,
        counted.counted_through_at is not null as has_stored_row

    from written
    left join counted
        on counted.device_id = written.device_id
        and counted.window_start_at = written.window_start_at
    where counted.counted_through_at is null
        or written.transformed_at > counted.counted_through_at

),

touched_windows as (

    select
        uncounted.device_id,
        uncounted.window_start_at,
        bool_or(uncounted.is_rewritten) as must_recount,
        bool_or(uncounted.has_stored_row) as has_stored_row

    from uncounted
    group by uncounted.device_id, uncounted.window_start_at

),

combined as (

    -- a window with a rewritten row: all of its events, one window at a time by the
    -- fact's (device_id, event_at) index
    select
        touched_windows.device_id,
        touched_windows.window_start_at,
        recounted.*

    from touched_windows
    cross join lateral (
        select
            fct.household_id,
            {{ group_columns }},
            {{ event_counts }}

        from {{ ref('fct_access_events') }} as fct
        where fct.device_id = touched_windows.device_id
            and fct.event_at >= touched_windows.window_start_at
            and fct.event_at < touched_windows.window_start_at + interval '15 minutes'
        group by 1, 2, 3, 4
    ) as recounted
    where touched_windows.must_recount

    union all

    -- any other window: the counts of the events it does not hold yet...
    select
        {%- for name in row_columns %}
        uncounted.{{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from uncounted
    inner join touched_windows
        on touched_windows.device_id = uncounted.device_id
        and touched_windows.window_start_at = uncounted.window_start_at
    where not touched_windows.must_recount

    union all

    -- ...and its stored rows, to add them to
    select
        {%- for name in row_columns %}
        stored.{{ name }}{{ ',' if not loop.last }}
        {%- endfor %}

    from {{ this }} as stored
    inner join touched_windows
        on touched_windows.device_id = stored.device_id
        and touched_windows.window_start_at = stored.window_start_at
    where touched_windows.has_stored_row and not touched_windows.must_recount

),

{% else %}

combined as (

    select
        fct.device_id,
        {{ window_start_15min('fct.event_at') }} as window_start_at,
        fct.household_id,
        {{ group_columns }},
        {{ event_counts }}

    from {{ ref('fct_access_events') }} as fct
    group by 1, 2, 3, 4, 5, 6

),

{% endif %}

summed as (

    select
        combined.device_id,
        combined.window_start_at,
        combined.household_id,
        combined.region,
        combined.device_type,
        combined.model,
        {%- for name in count_names %}
        sum(combined.{{ name }})::bigint as {{ name }},
        {%- endfor %}
        max(combined.last_event_at) as last_event_at

    from combined
    group by 1, 2, 3, 4, 5, 6

),

final as (

    select
        summed.device_id,
        summed.window_start_at,
        summed.household_id,
        summed.region,
        summed.device_type,
        summed.model,
        {%- for name in count_names %}
        summed.{{ name }},
        {%- endfor %}
        -- the sources with events, sorted (the contract's sources are all of them)
        array_remove(array[
            {%- for source in trigger_sources() | sort %}
            case when summed.{{ source }}_trigger_count > 0 then '{{ source }}' end
            {{- "," if not loop.last }}
            {%- endfor %}
        ]::text[], null) as trigger_sources,
        summed.last_event_at,
        {{ run_started_at_ts() }} as transformed_at

    from summed

)

select * from final
