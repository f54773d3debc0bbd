{# "Now" for rules that depend on it. The var `reference_at` pins it (tests, replays);
   empty means the database's current time. #}
{% macro reference_at() -%}
    {%- set pinned = var('reference_at', '') -%}
    {%- if pinned -%}
        cast('{{ pinned }}' as timestamptz)
    {%- else -%}
        current_timestamp
    {%- endif -%}
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

{# The timestamp every row written by this dbt invocation carries; downstream
   incremental models pick up "rows written since my last run" with it. #}
{% macro run_started_at_ts() -%}
    cast('{{ run_started_at.isoformat() }}' as timestamptz)
{%- endmacro %}

{# Minutes as a PostgreSQL interval literal from a dbt var. #}
{% macro minutes_var(name) -%}
    interval '{{ var(name) | int }} minutes'
{%- endmacro %}
