-- Rejected records, for the dashboard's data-quality view; payload stays bytea.
with

source as (

    select * from {{ source('smart_access', 'dead_letters') }}

),

renamed as (

    select
        source.kafka_topic,
        source.kafka_partition,
        source.kafka_offset,
        source.kafka_timestamp as kafka_published_at,
        encode(source.kafka_key, 'escape') as kafka_key,
        source.error_kind,
        source.error_detail,
        length(source.payload) as payload_bytes,
        source._ingested_at as ingested_at

    from source

)

select * from renamed
