{# Staging's dedupe: keep a raw row only when no earlier-landed copy of it exists
   (`match` says what a copy is, in terms of `earlier` and `source`; earlier-landed
   means smaller (_ingested_at, Kafka coordinates)). The two forms mean the same;
   the staging views are re-created by every build, so each build gets the plan
   shape that fits what it reads:
     an incremental build reads one window of new rows: a LATERAL ... LIMIT 1 probe
       of raw's index per row, so the cost follows the new rows, never the history
       (a NOT EXISTS may be planned as a hash anti join that reads all of raw);
     a full refresh reads everything: NOT EXISTS, which PostgreSQL runs as one
       (parallel) hash anti join - a probe per row would be many times slower. #}
{% macro first_landed_copy(relation, match) -%}
    {%- set earlier_copy -%}
        select 1 as found
        from {{ relation }} as earlier
        where {{ match }}
          and (earlier._ingested_at, earlier.kafka_topic, earlier.kafka_partition, earlier.kafka_offset)
            < (source._ingested_at, source.kafka_topic, source.kafka_partition, source.kafka_offset)
    {%- endset -%}
    {%- if flags.FULL_REFRESH -%}
    where not exists (
        {{ earlier_copy }}
    )
    {%- else -%}
    left join lateral (
        {{ earlier_copy }}
        limit 1
    ) as earlier_copy on true
    where earlier_copy.found is null
    {%- endif -%}
{%- endmacro %}
