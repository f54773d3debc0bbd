{# A value the build runner sets for each build (smart_access.watermarks: the stamps,
   the commit-safe window, the data watermark). A --vars value of the same name wins
   (tests, replays, unit-test overrides); otherwise the runner's, which it passes in
   the environment (SMART_ACCESS_BUILD_WINDOW, JSON) rather than as --vars: values
   that change every build would make dbt re-parse the whole project every build
   (a second and more of each 15-minute cycle). Read only while executing, never
   while parsing, so partial parsing does not see it change. #}
{% macro build_var(name, default='') -%}
    {%- set value = var(name, none) -%}
    {%- if value in (none, '', {}) and execute -%}
        {%- set value = fromjson(env_var('SMART_ACCESS_BUILD_WINDOW', '{}')).get(name) -%}
    {%- endif -%}
    {{ return(default if value in (none, '', {}) else value) }}
{%- endmacro %}

{# "Now" for the rules that depend on it (door left open, offline, 24 h rates): the
   data watermark, never the wall clock, so a lagging consumer delays alerts instead
   of inventing them. The var `reference_at` pins it (tests, replays); otherwise
   `data_watermark_at`, which the build runner (smart_access.watermarks) sets to the
   oldest, over the events' and health topics' partitions, of the newest record time
   landed (a partition an hour behind the newest is idle and left out); run by hand,
   dbt reads the same from ops. #}
{% macro reference_at() -%}
    {%- set pinned = var('reference_at', '') or build_var('data_watermark_at', '') -%}
    {%- if pinned -%}
        cast('{{ pinned }}' as timestamptz)
    {%- else -%}
        (
            select coalesce(min(marks.newest_record_at), timestamptz '-infinity')
            from ops.transform_partition_watermarks as marks
            where marks.source_table in ('raw.access_events', 'raw.device_health')
              and marks.newest_record_at >= (
                select max(newest.newest_record_at) - interval '60 minutes'
                from ops.transform_partition_watermarks as newest
                where newest.source_table in ('raw.access_events', 'raw.device_health')
              )
        )
    {%- endif -%}
{%- endmacro %}

{# How far the previous successful build read raw.<source_name>, and its stamp: the
   runner's values as literals (build_var), else - dbt run by hand - read from ops. #}
{% macro previous_ingested_through(source_name) -%}
    {%- set after = build_var('ingested_after', {}).get(source_name) -%}
    {%- if after -%}
        cast('{{ after }}' as timestamptz)
    {%- else -%}
        (
            select coalesce(max(marks.ingested_through), timestamptz '-infinity')
            from ops.transform_watermarks as marks
            where marks.source_table = 'raw.{{ source_name }}'
        )
    {%- endif -%}
{%- endmacro %}

{% macro previous_build_stamp() -%}
    {%- set previous = build_var('previous_transformed_at', '') -%}
    {%- if previous -%}
        cast('{{ previous }}' as timestamptz)
    {%- else -%}
        (
            select coalesce(max(marks.build_transformed_at), timestamptz '-infinity')
            from ops.transform_watermarks as marks
        )
    {%- endif -%}
{%- endmacro %}

{# The commit-safe slice of a raw source this build reads: rows landed after the
   watermark and at most at the new bound (see smart_access.watermarks). With
   `lower=false` (full refresh) only the upper bound applies. dbt run by hand (without
   the runner's values) reads from the stored watermark to the current safe bound. #}
{% macro ingested_window(source_name, column, lower=true) -%}
    {%- set through = build_var('ingested_through', {}).get(source_name) -%}
    {%- if lower -%}
        {{ column }} > {{ previous_ingested_through(source_name) }}
        and {% endif -%}
    {%- if through -%}
        {{ column }} <= cast('{{ through }}' as timestamptz)
    {%- else -%}
        {{ column }} < (select bound.safe_before from ops.transform_safe_bound() as bound)
    {%- endif -%}
{%- endmacro %}

{# Rows an upstream model wrote since the previous successful build (their
   transformed_at is later than its stamp): what an incremental model has to fold
   in. Never a max() over a big table. #}
{% macro written_since_previous_build(column) -%}
    {{ column }} > {{ previous_build_stamp() }}
{%- endmacro %}

{# Start of the 15-minute window holding `column` (UTC, aligned to the hour):
   an event exactly on a boundary belongs to the window that starts there. #}
{% macro window_start_15min(column) -%}
    date_bin(interval '15 minutes', {{ column }}, timestamptz '2000-01-01 00:00:00+00')
{%- endmacro %}

{% macro hour_start(column) -%}
    date_trunc('hour', {{ column }}, 'UTC')
{%- endmacro %}

{% macro day_start(column) -%}
    date_trunc('day', {{ column }}, 'UTC')
{%- endmacro %}

{# The timestamp every row written by this build carries: the runner's stamp (taken
   under the transform lock, so stamps only grow), else dbt's start. Downstream
   incremental models pick up "rows written since the previous build" with it. #}
{% macro run_started_at_ts() -%}
    cast('{{ build_var('transformed_at', '') or run_started_at.isoformat() }}' as timestamptz)
{%- endmacro %}

{# Minutes as a PostgreSQL interval literal from a dbt var. #}
{% macro minutes_var(name) -%}
    interval '{{ var(name) | int }} minutes'
{%- endmacro %}

{# Days as a PostgreSQL interval literal from a dbt var. #}
{% macro days_var(name) -%}
    interval '{{ var(name) | int }} days'
{%- endmacro %}

{# dbt's where-subquery for data tests, with the build's cut-offs filled in when the
   test is compiled. A test's `where` config is rendered when dbt parses, before the
   build's values exist, so the YAML names them with placeholders:
     __previous_build_stamp__  the previous successful build's stamp (rows written
                               since: transformed_at > ...);
     __previous_ingested_through__  how far the previous build read raw.access_events.
   Each becomes a literal from the runner's window (build_var), so the planner can use
   the stamp's b-tree with a true estimate; by hand, a subquery on ops; with the var
   `data_test_since`, that time (e.g. "-infinity" for the whole history). #}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if not where -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- set since = var('data_test_since', '') -%}
    {%- set since_literal = "cast('" ~ since ~ "' as timestamptz)" -%}
    {%- set where = where
        | replace('__previous_build_stamp__', since_literal if since else previous_build_stamp())
        | replace('__previous_ingested_through__',
            since_literal if since else previous_ingested_through('access_events')) -%}
    {%- set filtered -%}
        (select * from {{ relation }} where {{ where }}) dbt_subquery
    {%- endset -%}
    {{ return(filtered) }}
{%- endmacro %}
