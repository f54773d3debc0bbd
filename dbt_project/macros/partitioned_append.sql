{# Incremental strategy for the fact partitioned by event day (migration 0051 creates
   the table; the model sets full_refresh=false so dbt never replaces it with a plain
   one, and handles --full-refresh itself: see fct_access_events.sql).

   1. the partitions for every event day among the new rows, and the next
      `fact_partitions_ahead_days` days after the newest, are created if missing -
      a late event lands in its old day's partition;
   2. on --full-refresh the table is emptied first;
   3. the rows are appended in (device_id, event_at) order, so a device's new rows
      share heap pages and (device_id, event_at) index pages: the per-device readers
      of the same build (door sessions, windowed counts, alerts) fetch a device's
      rows from a few pages, and that index, whose inserts would otherwise spread
      over every device's leaf page, takes them in runs. The key (event_id,
      event_at) is local to a partition: a row already there with the same Kafka
      coordinates is the same row written again (a retried build, or a device whose
      registry changed) and is updated, with is_rewritten set (readers that keep sums
      recount its window); a later copy of an event (a resend landed beyond staging's
      dedupe horizon, so it reached the fact) is dropped - the first landed copy
      stays.
   The model's post-hook, analyze_appended_partitions, then refreshes the
   statistics the same build's readers plan with. #}
{% macro get_incremental_partitioned_append_sql(arg_dict) %}
    {%- set target = arg_dict["target_relation"] -%}
    {%- set source = arg_dict["temp_relation"] -%}
    {%- set columns = arg_dict["dest_columns"] | map(attribute="quoted") | list -%}
    {%- set keep = ["event_id", "event_at", "kafka_topic", "kafka_partition", "kafka_offset"] -%}
    {%- set ahead = var("fact_partitions_ahead_days", 2) | int -%}
do $partitions$
declare
    day_start timestamptz;
begin
    for day_start in
        select days.day_start
        from (
            select distinct date_trunc('day', staged.event_at, 'UTC') as day_start
            from {{ source }} as staged
            union
            select generate_series(
                date_trunc('day', max(staged.event_at), 'UTC') + interval '1 day',
                date_trunc('day', max(staged.event_at), 'UTC') + interval '{{ ahead }} days',
                interval '1 day'
            )
            from {{ source }} as staged
        ) as days
        where days.day_start is not null
          and not exists (
            select 1
            from pg_inherits as parts
            join pg_class as part on part.oid = parts.inhrelid
            where parts.inhparent = '{{ target }}'::regclass
              and part.relname = '{{ target.identifier }}_p'
                || to_char(days.day_start at time zone 'UTC', 'YYYYMMDD')
          )
    loop
        execute format(
            'create table if not exists %I.%I partition of %s for values from (%L) to (%L)',
            '{{ target.schema }}',
            '{{ target.identifier }}_p' || to_char(day_start at time zone 'UTC', 'YYYYMMDD'),
            '{{ target }}',
            day_start,
            day_start + interval '1 day'
        );
    end loop;
end;
$partitions$;

{% if flags.FULL_REFRESH %}
truncate table {{ target }};
{% endif %}

insert into {{ target }} as existing ({{ columns | join(", ") }})
select {{ columns | join(", ") }}
from {{ source }}
order by device_id, event_at
on conflict (event_id, event_at) do update set
    {%- for column in columns if column.strip('"') not in keep %}
    {%- if column.strip('"') == "is_rewritten" %}
    {{ column }} = true{{ "," if not loop.last }}
    {%- else %}
    {{ column }} = excluded.{{ column }}{{ "," if not loop.last }}
    {%- endif %}
    {%- endfor %}
where (existing.kafka_topic, existing.kafka_partition, existing.kafka_offset)
    = (excluded.kafka_topic, excluded.kafka_partition, excluded.kafka_offset)
{% endmacro %}

{# Post-hook of fct_access_events: analyse each day partition that took at least
   `fact_analyze_min_rows` rows of this build, on the columns the same build's
   readers select by (the build stamp, the device and time, the event type). The
   rows just written carry a stamp no statistic has seen, and a partition never
   analysed gets a default estimate of a third of its rows: either turns "rows
   written since the previous build" into a scan of the whole day. One b-tree probe
   per partition finds them; a sample of a day costs ~0.1 s. #}
{% macro analyze_appended_partitions() %}
{%- set min_rows = var("fact_analyze_min_rows", 10000) | int -%}
do $analyze$
declare
    day_partition regclass;
    written bigint;
begin
    for day_partition in
        select parts.inhrelid::regclass
        from pg_inherits as parts
        where parts.inhparent = '{{ this }}'::regclass
    loop
        execute format(
            'select count(*) from (select 1 from %s where transformed_at = %L limit %s) as written',
            day_partition, {{ run_started_at_ts() }}, {{ min_rows }}
        ) into written;
        if written >= {{ min_rows }} then
            execute format(
                'analyze %s (transformed_at, device_id, event_at, event_type)', day_partition
            );
        end if;
    end loop;
end;
$analyze$
{% endmacro %}
