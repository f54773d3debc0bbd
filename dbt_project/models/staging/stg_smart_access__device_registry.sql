-- Every registry change, one row per device and updated_at: a re-sent change keeps
-- its first landed copy. Compaction on the topic may drop old changes; what landed
-- stays here.
with

source as (

    select * from {{ source('smart_access', 'device_registry') }}

),

renamed as (

    select
        source.device_id,
        source.household_id,
        source.device_type,
        source.model,
        source.firmware_version,
        source.installed_at,
        source.status as device_status,
        source.region,
        source.timezone,
        source.updated_at,
        source.schema_version,
        source.kafka_topic,
        source.kafka_partition,
        source.kafka_offset,
        source._ingested_at as ingested_at

    from source
    where not exists (
        select 1
        from {{ source('smart_access', 'device_registry') }} as earlier
        where earlier.device_id = source.device_id
          and earlier.updated_at = source.updated_at
          and (earlier._ingested_at, earlier.kafka_topic, earlier.kafka_partition, earlier.kafka_offset)
            < (source._ingested_at, source.kafka_topic, source.kafka_partition, source.kafka_offset)
    )

)

select * from renamed
