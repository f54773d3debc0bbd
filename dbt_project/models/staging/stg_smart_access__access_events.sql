-- One row per unique access event: a replayed or re-sent event (same event_id)
-- keeps its first landed copy, looked for among the copies landed up to
-- dedupe_horizon_days (var, 7) earlier. A copy landed later than that reaches
-- fct_access_events, whose key (event_id, event_at) keeps the first copy there.
-- The dedupe is a NOT EXISTS on the event_id index, not a window function, so a
-- filter on ingested_at pushes down into this view.
with

source as (

    select * from {{ source('smart_access', 'access_events') }}

),

renamed as (

    select
        source.event_id,
        source.device_id,
        source.household_id,
        source.event_ts as event_at,
        source.event_type,
        source.trigger_source,
        source.user_id,
        source.failure_reason,
        source.schema_version,
        source.kafka_topic,
        source.kafka_partition,
        source.kafka_offset,
        source._ingested_at as ingested_at

    from source
    where not exists (
        select 1
        from {{ source('smart_access', 'access_events') }} as earlier
        where earlier.event_id = source.event_id
          and earlier._ingested_at >= source._ingested_at - {{ days_var('dedupe_horizon_days') }}
          and (earlier._ingested_at, earlier.kafka_topic, earlier.kafka_partition, earlier.kafka_offset)
            < (source._ingested_at, source.kafka_topic, source.kafka_partition, source.kafka_offset)
    )

)

select * from renamed
