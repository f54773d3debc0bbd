{{
    config(
        materialized='incremental',
        unique_key=['device_id', 'reported_at'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['device_id', 'reported_at'], 'unique': True},
            {'columns': ['device_id', 'arrived_at']},
        ],
    )
}}
-- Every health report once (staging's dedupe), kept in a table indexed by device and
-- report time: fct_alerts reads a device's reports around the episodes it recomputes
-- here with one index range each, instead of re-running staging's dedupe over the
-- device's whole history. Incremental: the reports of the build's commit-safe window.

with

health as (

    select * from {{ ref('stg_smart_access__device_health') }}
    {% if is_incremental() %}
    where {{ ingested_window('device_health', 'ingested_at') }}
    {% else %}
    where {{ ingested_window('device_health', 'ingested_at', lower=false) }}
    {% endif %}

)

select
    health.device_id,
    health.reported_at,
    health.battery_pct,
    health.signal_strength_dbm,
    health.is_online,
    health.firmware_version,
    health.arrived_at,
    health.ingested_at,
    {{ run_started_at_ts() }} as transformed_at

from health
