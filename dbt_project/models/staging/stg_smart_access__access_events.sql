-- One row per unique access event: a replayed or re-sent event (same event_id, and
-- the same payload, so the same event_ts) keeps its first landed copy, looked for
-- among the copies landed up to dedupe_horizon_days (var, 7) earlier. A copy landed later than that reaches
-- fct_access_events, whose key (event_id, event_at) keeps the first copy there.
-- The dedupe (macro first_landed_copy) is a per-row test, not a window function, so
-- a filter on ingested_at pushes down into this view; an incremental build probes
-- raw's (event_ts, event_id, ...) index once per new row (migration 0053).
with

source as (

    select * from {{ source('smart_access', 'access_events') }}

),

renamed as (

    -- Contract v0 (the original guide's format) is mapped to v1 here; v1 rows pass
    -- through unchanged. The README's contract section has the table: event_id is
    -- already a name-based UUID (raw.source_event_id keeps the device's own id),
    -- command_failed is a fail whose reason is unknown, the guide's button is the
    -- device's own local control (v1 keypad), and a v0 event carries no household
    -- ('unknown' here; fct_access_events takes the registry's when it knows one).
    select
        source.event_id,
        source.device_id,
        coalesce(source.household_id, 'unknown') as household_id,
        source.event_ts as event_at,
        case source.event_type when 'command_failed' then 'fail' else source.event_type end
            as event_type,
        case source.trigger_source when 'button' then 'keypad' else source.trigger_source end
            as trigger_source,
        source.user_id,
        case
            when source.schema_version = 0 and source.event_type in ('fail', 'command_failed')
                then 'unknown'
            else source.failure_reason
        end as failure_reason,
        source.source_event_id,
        source.schema_version,
        source.kafka_topic,
        source.kafka_partition,
        source.kafka_offset,
        source._ingested_at as ingested_at

    from source
    {{ first_landed_copy(
        source('smart_access', 'access_events'),
        "earlier.event_ts = source.event_ts and earlier.event_id = source.event_id"
            ~ " and earlier._ingested_at >= source._ingested_at - " ~ days_var('dedupe_horizon_days')
    ) }}

)

select * from renamed
