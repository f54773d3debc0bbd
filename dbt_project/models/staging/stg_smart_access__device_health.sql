-- One row per device and report time: a re-sent report (same device_id and
-- reported_at) keeps its first landed copy (macro first_landed_copy: an incremental
-- build probes the (device_id, reported_at) index once per new row). arrived_at is when the report reached Kafka (its record
-- timestamp, else its landing time): the offline rule follows arrivals, not the
-- device's clock.
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
        coalesce(source.kafka_timestamp, source._ingested_at) as arrived_at,
        source._ingested_at as ingested_at

    from source
    {{ first_landed_copy(
        source('smart_access', 'device_health'),
        "earlier.device_id = source.device_id and earlier.reported_at = source.reported_at"
    ) }}

)

select * from renamed
