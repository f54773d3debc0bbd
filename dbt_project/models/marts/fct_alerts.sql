-- Every alert episode up to the reference time (var reference_at, default now), one
-- row each; ended_at is null while the condition still holds. Rules (thresholds are
-- dbt vars):
--   repeated_failures  at least repeated_failures_count (3) fails on one device within
--                      repeated_failures_window_minutes (5): active from each such fail
--                      until the window's oldest fail is 5 minutes old; overlapping
--                      stretches merge. critical from repeated_failures_critical_count
--                      (6) fails in the episode.
--   door_left_open     an open with no close for more than door_open_minutes (10):
--                      starts 10 minutes after the open, ends at the next close (or the
--                      next open, when the close never came). critical when open for
--                      more than door_open_critical_minutes (60).
--   low_battery        consecutive health reports below low_battery_pct (15): starts at
--                      the first, ends at the next report at or above it. critical
--                      below critical_battery_pct (5).
--   offline            more than offline_minutes (15) without a health report: starts
--                      15 minutes after the last report, ends at the next one. Open
--                      offline alerts of retired devices are not raised. critical after
--                      offline_critical_minutes (60).
-- Rebuilt on every run: open alerts depend on the reference time.

{% set fail_n = var('repeated_failures_count') | int %}

with

events as (

    select * from {{ ref('fct_access_events') }}
    where event_at <= {{ reference_at() }}

),

health as (

    select * from {{ ref('stg_smart_access__device_health') }}
    where reported_at <= {{ reference_at() }}
      and {{ ingested_window('device_health', 'ingested_at', lower=false) }}

),

current_devices as (

    select device_id, household_id, device_status
    from {{ ref('dim_device') }}
    where is_current

),

-- repeated failures -------------------------------------------------------------

fails as (

    select
        events.device_id,
        events.household_id,
        events.event_at,
        row_number() over device_order as fail_number,
        lag(events.event_at, {{ fail_n - 1 }}) over device_order as window_oldest_fail_at

    from events
    where events.event_type = 'fail'
    window device_order as (partition by events.device_id order by events.event_at, events.event_id)

),

firing as (

    select
        fails.device_id,
        fails.household_id,
        fails.fail_number,
        fails.event_at as firing_from_at,
        fails.window_oldest_fail_at + {{ minutes_var('repeated_failures_window_minutes') }}
            as firing_until_at

    from fails
    where fails.window_oldest_fail_at is not null
      and fails.event_at - fails.window_oldest_fail_at
        <= {{ minutes_var('repeated_failures_window_minutes') }}

),

firing_flagged as (

    select
        firing.*,
        case
            when firing.firing_from_at <= lag(firing.firing_until_at) over device_order
                then 0
            else 1
        end as starts_episode

    from firing
    window device_order as (partition by firing.device_id order by firing.fail_number)

),

firing_episodes as (

    select
        firing_flagged.*,
        sum(firing_flagged.starts_episode) over (
            partition by firing_flagged.device_id
            order by firing_flagged.fail_number
            rows unbounded preceding
        ) as episode_number

    from firing_flagged

),

repeated_failures as (

    select
        'repeated_failures' as alert_type,
        firing_episodes.device_id,
        (array_agg(firing_episodes.household_id order by firing_episodes.fail_number))[1]
            as household_id,
        min(firing_episodes.firing_from_at) as started_at,
        max(firing_episodes.firing_until_at) as condition_until_at,
        case
            when max(firing_episodes.fail_number) - min(firing_episodes.fail_number) + {{ fail_n }}
                >= {{ var('repeated_failures_critical_count') }}
                then 'critical'
            else 'warning'
        end as severity

    from firing_episodes
    group by firing_episodes.device_id, firing_episodes.episode_number

),

-- door left open ----------------------------------------------------------------

door_left_open as (

    select
        'door_left_open' as alert_type,
        sessions.device_id,
        sessions.household_id,
        sessions.opened_at + {{ minutes_var('door_open_minutes') }} as started_at,
        sessions.ended_at as condition_until_at,
        case
            when coalesce(sessions.ended_at, {{ reference_at() }}) - sessions.opened_at
                > {{ minutes_var('door_open_critical_minutes') }}
                then 'critical'
            else 'warning'
        end as severity

    from {{ ref('int_door_sessions') }} as sessions
    where sessions.opened_at <= {{ reference_at() }}
      and coalesce(sessions.ended_at, {{ reference_at() }}) - sessions.opened_at
        > {{ minutes_var('door_open_minutes') }}

),

-- low battery -------------------------------------------------------------------

battery_readings as (

    select
        health.device_id,
        health.reported_at,
        health.battery_pct,
        health.battery_pct < {{ var('low_battery_pct') }} as is_low,
        coalesce(
            lag(health.battery_pct < {{ var('low_battery_pct') }}) over device_order, false
        ) as was_low,
        lead(health.reported_at) over device_order as next_reported_at

    from health
    window device_order as (partition by health.device_id order by health.reported_at)

),

low_readings as (

    select
        battery_readings.*,
        sum(case when battery_readings.was_low then 0 else 1 end) over (
            partition by battery_readings.device_id
            order by battery_readings.reported_at
            rows unbounded preceding
        ) as episode_number

    from battery_readings
    where battery_readings.is_low

),

low_battery as (

    select
        'low_battery' as alert_type,
        low_readings.device_id,
        current_devices.household_id,
        min(low_readings.reported_at) as started_at,
        (array_agg(low_readings.next_reported_at order by low_readings.reported_at desc))[1]
            as condition_until_at,
        case
            when min(low_readings.battery_pct) < {{ var('critical_battery_pct') }}
                then 'critical'
            else 'warning'
        end as severity

    from low_readings
    left join current_devices on current_devices.device_id = low_readings.device_id
    group by low_readings.device_id, current_devices.household_id, low_readings.episode_number

),

-- offline -----------------------------------------------------------------------

report_gaps as (

    select
        health.device_id,
        health.reported_at,
        lead(health.reported_at) over (
            partition by health.device_id order by health.reported_at
        ) as next_reported_at

    from health

),

offline as (

    select
        'offline' as alert_type,
        report_gaps.device_id,
        current_devices.household_id,
        report_gaps.reported_at + {{ minutes_var('offline_minutes') }} as started_at,
        report_gaps.next_reported_at as condition_until_at,
        case
            when coalesce(report_gaps.next_reported_at, {{ reference_at() }}) - report_gaps.reported_at
                > {{ minutes_var('offline_critical_minutes') }}
                then 'critical'
            else 'warning'
        end as severity

    from report_gaps
    left join current_devices on current_devices.device_id = report_gaps.device_id
    where coalesce(report_gaps.next_reported_at, {{ reference_at() }}) - report_gaps.reported_at
        > {{ minutes_var('offline_minutes') }}
      and not (
          report_gaps.next_reported_at is null
          and current_devices.device_status is not distinct from 'retired'
      )

),

unioned as (

    select * from repeated_failures
    union all
    select * from door_left_open
    union all
    select * from low_battery
    union all
    select * from offline

),

final as (

    select
        md5(concat_ws('|', unioned.alert_type, unioned.device_id,
            extract(epoch from unioned.started_at)::text)) as alert_id,
        unioned.alert_type,
        unioned.device_id,
        unioned.household_id,
        unioned.started_at,
        case
            when unioned.condition_until_at <= {{ reference_at() }}
                then unioned.condition_until_at
        end as ended_at,
        not coalesce(unioned.condition_until_at <= {{ reference_at() }}, false) as is_open,
        unioned.severity,
        {{ reference_at() }} as evaluated_at

    from unioned
    where unioned.started_at <= {{ reference_at() }}

)

select * from final
