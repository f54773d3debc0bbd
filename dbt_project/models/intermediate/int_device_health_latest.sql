{{
    config(
        materialized='incremental',
        unique_key='device_id',
        incremental_strategy='merge',
        on_schema_change='fail',
    )
}}
-- Each device's latest health report (by reported_at), and when its latest report
-- of any time arrived (last_arrived_at: the offline rule's "last heard from").
-- Incremental: the reports landed in this build's commit-safe window compete with
-- the current row; a late, older report never wins, but its arrival counts.

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
        health.arrived_at,
        health.arrived_at as last_arrived_at,
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
        current_rows.arrived_at,
        current_rows.last_arrived_at,
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
        health.arrived_at,
        health.arrived_at as last_arrived_at,
        health.ingested_at
    from health
    where {{ ingested_window('device_health', 'health.ingested_at', lower=false) }}
    {% endif %}

),

latest as (

    select distinct on (candidates.device_id)
        candidates.device_id,
        candidates.reported_at,
        candidates.battery_pct,
        candidates.signal_strength_dbm,
        candidates.is_online,
        candidates.firmware_version,
        candidates.arrived_at,
        max(candidates.last_arrived_at) over (partition by candidates.device_id)
            as last_arrived_at,
        candidates.ingested_at
    from candidates
    order by candidates.device_id, candidates.reported_at desc, candidates.ingested_at

)

select * from latest
