{{
    config(
        materialized='incremental',
        unique_key='device_id',
        incremental_strategy='merge',
        on_schema_change='fail',
    )
}}
-- Each device's latest health report (by reported_at). Incremental: the reports
-- landed in this build's commit-safe window compete with the current row; a late, older report never wins.

with

health as (

    select * from {{ ref('stg_smart_access__device_health') }}

),

candidates as (

    {% if is_incremental() %}
    select
        health.device_id,
        health.reported_at,
        health.battery_pct,
        health.signal_strength_dbm,
        health.is_online,
        health.firmware_version,
        health.ingested_at
    from health
    where {{ ingested_window('device_health', 'health.ingested_at') }}

    union all

    select
        current_rows.device_id,
        current_rows.reported_at,
        current_rows.battery_pct,
        current_rows.signal_strength_dbm,
        current_rows.is_online,
        current_rows.firmware_version,
        current_rows.ingested_at
    from {{ this }} as current_rows
    {% else %}
    select
        health.device_id,
        health.reported_at,
        health.battery_pct,
        health.signal_strength_dbm,
        health.is_online,
        health.firmware_version,
        health.ingested_at
    from health
    where {{ ingested_window('device_health', 'health.ingested_at', lower=false) }}
    {% endif %}

),

latest as (

    select distinct on (candidates.device_id) *
    from candidates
    order by candidates.device_id, candidates.reported_at desc, candidates.ingested_at

)

select * from latest
