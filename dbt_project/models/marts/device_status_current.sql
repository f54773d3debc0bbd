-- Each device's state at the reference time (var reference_at, default now).
-- health_state, first rule that matches:
--   critical  no health report within offline_minutes (15) of the reference time,
--             or the last report says offline, or battery < critical_battery_pct (5)
--   warning   battery < low_battery_pct (15), signal < weak_signal_dbm (-100),
--             or 24 h failure rate >= warning_failure_rate_24h (0.2)
--   ok        otherwise
-- The 24 h failure rate covers the 96 fifteen-minute windows starting in
-- (reference - 24 h, reference].
-- Devices the registry has never seen (a v0 device, say) are here too, as
-- 'unregistered' in household 'unknown', once they report health or had events in
-- the last 24 hours: their data is shown, not lost.
with

health as (

    select * from {{ ref('int_device_health_latest') }}

),

failures_24h as (

    select
        windows.device_id,
        sum(windows.event_count) as event_count_24h,
        sum(windows.fail_count) as fail_count_24h
    from {{ ref('agg_access_15min') }} as windows
    where windows.window_start_at > {{ reference_at() }} - interval '24 hours'
      and windows.window_start_at <= {{ reference_at() }}
    group by windows.device_id

),

registered as (

    select
        current_versions.device_id,
        current_versions.household_id,
        current_versions.device_type,
        current_versions.model,
        current_versions.device_status,
        current_versions.region,
        current_versions.firmware_version
    from {{ ref('dim_device') }} as current_versions
    where current_versions.is_current

),

unregistered as (

    select
        seen.device_id,
        'unknown' as household_id,
        null::text as device_type,
        null::text as model,
        'unregistered' as device_status,
        null::text as region,
        null::text as firmware_version
    from (
        select health.device_id from health
        union
        select failures_24h.device_id from failures_24h
    ) as seen
    where not exists (
        select 1 from {{ ref('dim_device') }} as versions
        where versions.device_id = seen.device_id
    )

),

devices as (

    select * from registered
    union all
    select * from unregistered

),

last_events as (

    select
        devices.device_id,
        (
            select max(events.event_at)
            from {{ ref('fct_access_events') }} as events
            where events.device_id = devices.device_id
        ) as last_event_at
    from devices

),

joined as (

    select
        devices.device_id,
        devices.household_id,
        devices.device_type,
        devices.model,
        devices.device_status,
        devices.region,
        coalesce(health.firmware_version, devices.firmware_version) as firmware_version,
        greatest(health.reported_at, last_events.last_event_at) as last_seen_at,
        health.reported_at as last_health_report_at,
        last_events.last_event_at,
        health.battery_pct,
        health.signal_strength_dbm,
        coalesce(
            health.is_online
            and health.reported_at > {{ reference_at() }} - {{ minutes_var('offline_minutes') }},
            false
        ) as is_online,
        coalesce(failures_24h.event_count_24h, 0)::bigint as event_count_24h,
        coalesce(failures_24h.fail_count_24h, 0)::bigint as fail_count_24h,
        round(failures_24h.fail_count_24h / nullif(failures_24h.event_count_24h, 0), 6)
            as failure_rate_24h

    from devices
    left join health on health.device_id = devices.device_id
    left join last_events on last_events.device_id = devices.device_id
    left join failures_24h on failures_24h.device_id = devices.device_id

),

final as (

    select
        joined.*,
        case
            when not joined.is_online
                or joined.battery_pct < {{ var('critical_battery_pct') }}
                then 'critical'
            when joined.battery_pct < {{ var('low_battery_pct') }}
                or joined.signal_strength_dbm < {{ var('weak_signal_dbm') }}
                or joined.failure_rate_24h >= {{ var('warning_failure_rate_24h') }}
                then 'warning'
            else 'ok'
        end as health_state,
        {{ reference_at() }} as evaluated_at

    from joined

)

select * from final
