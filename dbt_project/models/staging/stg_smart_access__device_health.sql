-- One row per device and report time: a re-sent report (same device_id and
-- reported_at) keeps its first landed copy.
with

source as (

    select * from {{ source('smart_access', 'device_health') }}

),

renamed as (

    select
        source.device_id,
        source.reported_at,
        source.battery_pct,
        source.signal_strength_dbm,
        source.is_online,
        source.firmware_version,
        source.temperature_c,
        source.schema_version,
        source.kafka_topic,
        source.kafka_partition,
        source.kafka_offset,
        source._ingested_at as ingested_at

    from source
    where not exists (
        select 1
        from {{ source('smart_access', 'device_health') }} as earlier
        where earlier.device_id = source.device_id
          and earlier.reported_at = source.reported_at
          and (earlier._ingested_at, earlier.kafka_topic, earlier.kafka_partition, earlier.kafka_offset)
            < (source._ingested_at, source.kafka_topic, source.kafka_partition, source.kafka_offset)
    )

)

select * from renamed
