{{
    config(
        materialized='incremental',
        unique_key=['device_id', 'hour_start_at'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['device_id', 'hour_start_at'], 'unique': True},
        ],
    )
}}
-- Per device and hour (UTC): battery, signal and how often the device said it was
-- online. Incremental: the device-hours touched by reports landed in this build's
-- commit-safe window are recomputed in full from the reports up to its bound
-- (int_device_health_reports, deduped once).
-- depends_on: {{ ref('int_device_health_reports') }}

with

health as (

    select * from {{ ref('stg_smart_access__device_health') }}

),

{% if is_incremental() %}

touched as (

    select distinct
        health.device_id,
        {{ hour_start('health.reported_at') }} as hour_start_at
    from health
    where {{ ingested_window('device_health', 'health.ingested_at') }}

),

reports as (

    -- The touched hours' reports, deduped once already, by one index range each.
    select reported.*, touched.hour_start_at
    from touched
    inner join {{ ref('int_device_health_reports') }} as reported
        on reported.device_id = touched.device_id
        and reported.reported_at >= touched.hour_start_at
        and reported.reported_at < touched.hour_start_at + interval '1 hour'

),

{% else %}

reports as (

    select health.*, {{ hour_start('health.reported_at') }} as hour_start_at
    from health
    where {{ ingested_window('device_health', 'health.ingested_at', lower=false) }}

),

{% endif %}

aggregated as (

    select
        reports.device_id,
        reports.hour_start_at,
        count(*) as report_count,
        min(reports.battery_pct) as battery_min_pct,
        round(avg(reports.battery_pct), 2) as battery_avg_pct,
        round(avg(reports.signal_strength_dbm), 2) as signal_avg_dbm,
        round(count(*) filter (where reports.is_online)::numeric / count(*), 6) as online_ratio,
        max(reports.ingested_at) as last_ingested_at

    from reports
    group by reports.device_id, reports.hour_start_at

)

select * from aggregated
