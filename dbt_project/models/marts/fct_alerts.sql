{{
    config(
        materialized='incremental',
        incremental_strategy='replace_alert_scope',
        on_schema_change='fail',
        pre_hook="{{ create_alert_scope() }}",
        indexes=[
            {'columns': ['alert_id'], 'unique': True},
            {'columns': ['device_id', 'alert_type', 'started_at']},
            {'columns': ['is_open', 'device_id']},
            {'columns': ['evaluated_at']},
            {'columns': ['transformed_at']},
            {'columns': ['started_at']},
            {'columns': ['ended_at']},
            {'columns': ['alert_type', 'severity']},
        ],
    )
}}
-- Every alert episode up to the reference time (var reference_at, default the data
-- watermark), one row each; ended_at is null while the condition still holds. Rules
-- (thresholds are dbt vars):
--   repeated_failures  at least repeated_failures_count (3) fails on one device within
--                      repeated_failures_window_minutes (5): active from each such fail
--                      until the window's oldest fail is 5 minutes old; overlapping
--                      stretches merge. critical from repeated_failures_critical_count
--                      (6) fails in the episode.
--   door_left_open     an open with no close for more than door_open_minutes (10):
--                      starts 10 minutes after the open, ends at the next close (or the
--                      next open, when the close never came). critical when open for
--                      more than door_open_critical_minutes (60).
--   low_battery        starts at a health report below low_battery_pct (15) and lasts
--                      until the next report at or above low_battery_recovered_pct
--                      (20): hysteresis, so 14/15/14 is one episode. critical below
--                      critical_battery_pct (5).
--   offline            more than offline_minutes (15) between two arrivals of the
--                      device's health reports (arrived_at: when a report reached
--                      Kafka, not the device's clock): starts 15 minutes after the
--                      last arrival, ends at the next one - so reports buffered while
--                      the device was unreachable do not erase the gap, a device that
--                      stops reporting alerts by absence, and a registered device that
--                      never reported is offline from its registration. critical
--                      after offline_critical_minutes (60).
--   retired devices    never alert: an episode of a device retired now ends at its
--                      retirement (the current version's valid_from_at), and none
--                      starts at or after it.
-- Incremental: per device and rule only the episodes from the scope's since_at on
-- are recomputed, and door alerts only for the scoped door sessions
-- (macros/alert_scope.sql says what touches them), from the data they need: fails
-- from 5 minutes before, health reports from 15 minutes before. alert_id is kept
-- for an episode across builds: a recomputed episode that overlaps one written
-- before takes its id; a door alert's id is its session's.

-- The scope (pre-hook) also reads these:
-- depends_on: {{ ref('int_device_health_latest') }}
-- depends_on: {{ ref('stg_smart_access__device_registry') }}
-- depends_on: {{ ref('stg_smart_access__device_health') }}

{% set fail_n = var('repeated_failures_count') | int %}

with

{% if is_incremental() %}

-- The scope tables (pre-hook): one row per device and alert type for
-- the per-device rules, one row per door session for door_left_open. Every read
-- below is a per-device index range (a LATERAL with OFFSET 0 keeps it a
-- parameterized index scan rather than a join over a whole table).
scope as (

    select * from {{ alert_scope_relation() }}

),

events as (

    select fails.*
    from scope
    cross join lateral (
        select fct.*
        from {{ ref('fct_access_events') }} as fct
        where fct.device_id = scope.device_id
          and fct.event_type = 'fail'
          -- a warning episode running at since_at (a few fails) is re-read whole; the
          -- margin covers the fails a firing at since_at looks back to
          and fct.event_at >= case
                when scope.running_severity = 'warning'
                    then least(scope.since_at, scope.running_started_at)
                else scope.since_at
            end - 4 * {{ minutes_var('repeated_failures_window_minutes') }}
          and fct.event_at <= {{ reference_at() }}
        offset 0
    ) as fails
    where scope.alert_type = 'repeated_failures'

),

door_sessions as (

    select * from {{ door_scope_relation() }}

),

battery_health as (

    select scope.device_id, reports.reported_at, reports.battery_pct
    from scope
    cross join lateral (
        select health.reported_at, health.battery_pct
        from {{ ref('int_device_health_reports') }} as health
        where health.device_id = scope.device_id
          and health.reported_at >= scope.since_at
          and health.reported_at <= {{ reference_at() }}
        offset 0
    ) as reports
    where scope.alert_type = 'low_battery'

    union all

    -- The episode running at since_at stands in for its readings before since_at: one
    -- low reading at its start, critical if it was (no reading in it recovered, so
    -- the hysteresis state at since_at is "low" either way).
    select
        scope.device_id,
        scope.running_started_at,
        case
            when scope.running_severity = 'critical' then {{ var('critical_battery_pct') }} - 1
            else {{ var('critical_battery_pct') }}
        end
    from scope
    where scope.alert_type = 'low_battery'
      and scope.running_started_at is not null

),

offline_health as (

    select arrivals.*
    from scope
    cross join lateral (
        select health.*
        from {{ ref('int_device_health_reports') }} as health
        where health.device_id = scope.device_id
          and health.arrived_at >= scope.since_at - {{ minutes_var('offline_minutes') }}
          and health.arrived_at <= {{ reference_at() }}
        offset 0
    ) as arrivals
    where scope.alert_type = 'offline'

),

{% else %}

events as (

    select * from {{ ref('fct_access_events') }}
    where event_at <= {{ reference_at() }}

),

door_sessions as (

    select * from {{ ref('int_door_sessions') }}

),

battery_health as (

    select device_id, reported_at, battery_pct from {{ ref('int_device_health_reports') }}
    where reported_at <= {{ reference_at() }}

),

offline_health as (

    select * from {{ ref('int_device_health_reports') }}
    where arrived_at <= {{ reference_at() }}

),

{% endif %}

current_devices as (

    select
        device_id,
        household_id,
        device_status,
        -- A retired device's episodes end at its retirement; none start after it.
        case when device_status = 'retired' then valid_from_at end as retired_at,
        coalesce(
            case when device_status = 'retired' then valid_from_at end,
            timestamptz 'infinity'
        ) as alerting_until_at
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
            when least(
                    coalesce(sessions.ended_at, {{ reference_at() }}),
                    coalesce(current_devices.alerting_until_at, timestamptz 'infinity')
                ) - sessions.opened_at
                > {{ minutes_var('door_open_critical_minutes') }}
                then 'critical'
            else 'warning'
        end as severity

    from door_sessions as sessions
    left join current_devices on current_devices.device_id = sessions.device_id
    where sessions.opened_at <= {{ reference_at() }}
      and least(
            coalesce(sessions.ended_at, {{ reference_at() }}),
            coalesce(current_devices.alerting_until_at, timestamptz 'infinity')
        ) - sessions.opened_at
        > {{ minutes_var('door_open_minutes') }}

),

-- low battery -------------------------------------------------------------------

battery_readings as (

    select
        health.device_id,
        health.reported_at,
        health.battery_pct,
        lead(health.reported_at) over device_order as next_reported_at,
        -- Hysteresis: low from a report below low_battery_pct until one at or above
        -- low_battery_recovered_pct; the readings in between stay in the episode.
        max(case when health.battery_pct < {{ var('low_battery_pct') }} then health.reported_at end)
            over device_order as last_entry_at,
        max(case when health.battery_pct >= {{ var('low_battery_recovered_pct') }}
                then health.reported_at end)
            over device_order as last_exit_at

    from battery_health as health
    window device_order as (
        partition by health.device_id order by health.reported_at
        rows unbounded preceding
    )

),

battery_states as (

    select
        battery_readings.*,
        battery_readings.last_entry_at is not null
            and battery_readings.last_entry_at > coalesce(
                battery_readings.last_exit_at, timestamptz '-infinity'
            ) as is_low

    from battery_readings

),

battery_flagged as (

    select
        battery_states.*,
        coalesce(lag(battery_states.is_low) over (
            partition by battery_states.device_id order by battery_states.reported_at
        ), false) as was_low

    from battery_states

),

low_readings as (

    select
        battery_flagged.*,
        sum(case when battery_flagged.was_low then 0 else 1 end) over (
            partition by battery_flagged.device_id
            order by battery_flagged.reported_at
            rows unbounded preceding
        ) as episode_number

    from battery_flagged
    where battery_flagged.is_low

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

-- By arrival: a gap is two consecutive arrivals of a device's reports more than
-- offline_minutes apart. Reports a device buffered while it was unreachable arrive
-- together after the gap, so they do not erase it; a skewed device clock cannot
-- fake one.
report_gaps as (

    select
        health.device_id,
        health.arrived_at as reported_at,
        lead(health.arrived_at) over (
            partition by health.device_id order by health.arrived_at
        ) as next_reported_at

    from offline_health as health

),

offline as (

    select
        'offline' as alert_type,
        report_gaps.device_id,
        current_devices.household_id,
        report_gaps.reported_at + {{ minutes_var('offline_minutes') }} as started_at,
        report_gaps.next_reported_at as condition_until_at,
        case
            when least(
                    coalesce(report_gaps.next_reported_at, {{ reference_at() }}),
                    coalesce(current_devices.alerting_until_at, timestamptz 'infinity')
                ) - report_gaps.reported_at
                > {{ minutes_var('offline_critical_minutes') }}
                then 'critical'
            else 'warning'
        end as severity

    from report_gaps
    left join current_devices on current_devices.device_id = report_gaps.device_id
    where least(
            coalesce(report_gaps.next_reported_at, {{ reference_at() }}),
            coalesce(current_devices.alerting_until_at, timestamptz 'infinity')
        ) - report_gaps.reported_at
        > {{ minutes_var('offline_minutes') }}

    union all

    -- Registered and never reported: offline from the registration on.
    select
        'offline' as alert_type,
        current_devices.device_id,
        current_devices.household_id,
        registered.first_valid_from_at + {{ minutes_var('offline_minutes') }} as started_at,
        null::timestamptz as condition_until_at,
        case
            when least({{ reference_at() }}, current_devices.alerting_until_at)
                - registered.first_valid_from_at
                > {{ minutes_var('offline_critical_minutes') }}
                then 'critical'
            else 'warning'
        end as severity

    from current_devices
    inner join (
        select versions.device_id, min(versions.valid_from_at) as first_valid_from_at
        from {{ ref('dim_device') }} as versions
        group by versions.device_id
    ) as registered on registered.device_id = current_devices.device_id
    {% if is_incremental() %}
    inner join scope
        on scope.device_id = current_devices.device_id
        and scope.alert_type = 'offline'
    {% endif %}
    where not exists (
        select 1 from {{ ref('int_device_health_latest') }} as latest
        where latest.device_id = current_devices.device_id
    )
      and least({{ reference_at() }}, current_devices.alerting_until_at)
        - registered.first_valid_from_at > {{ minutes_var('offline_minutes') }}

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

{% if is_incremental() %}

-- Per-device rules: the episodes from the scope's since_at on, and the one that
-- continues the episode running at since_at (the latest computed episode starting by
-- then; earlier ones are parts of it): it keeps the running episode's start, id,
-- household, and a critical severity. Door alerts: the scoped sessions' own.
flagged as (

    select
        unioned.*,
        scope.since_at,
        scope.running_alert_id,
        scope.running_started_at,
        scope.running_household_id,
        scope.running_severity,
        coalesce(
            scope.running_started_at is not null and unioned.started_at <= scope.since_at,
            false
        ) as continues
    from unioned
    left join scope
        on scope.device_id = unioned.device_id
        and scope.alert_type = unioned.alert_type

),

flagged_latest as (

    select
        flagged.*,
        max(flagged.started_at) filter (where flagged.continues) over (
            partition by flagged.device_id, flagged.alert_type
        ) as last_continuing_at
    from flagged

),

episodes as (

    select
        flagged.alert_type,
        flagged.device_id,
        case
            when flagged.continues then flagged.running_household_id else flagged.household_id
        end as household_id,
        case
            when flagged.continues then least(flagged.started_at, flagged.running_started_at)
            else flagged.started_at
        end as started_at,
        flagged.condition_until_at,
        case
            when flagged.continues and flagged.running_severity = 'critical' then 'critical'
            else flagged.severity
        end as severity,
        case when flagged.continues then flagged.running_alert_id end as continued_alert_id

    from flagged_latest as flagged
    where flagged.alert_type = 'door_left_open'
       or flagged.started_at >= flagged.since_at
       or (flagged.continues and flagged.started_at = flagged.last_continuing_at)

),

{% else %}

episodes as (

    select unioned.*, null::text as continued_alert_id
    from unioned

),

{% endif %}

computed as (

    select
        unioned.alert_type,
        unioned.device_id,
        unioned.household_id,
        unioned.started_at,
        case
            when capped.until_at <= {{ reference_at() }} then capped.until_at
        end as ended_at,
        not coalesce(capped.until_at <= {{ reference_at() }}, false) as is_open,
        unioned.severity,
        unioned.continued_alert_id

    from episodes as unioned
    left join current_devices on current_devices.device_id = unioned.device_id
    cross join lateral (
        select case
            when current_devices.retired_at
                <= coalesce(unioned.condition_until_at, timestamptz 'infinity')
                then current_devices.retired_at
            else unioned.condition_until_at
        end as until_at
    ) as capped
    where unioned.started_at <= {{ reference_at() }}
      and unioned.started_at < coalesce(current_devices.alerting_until_at, timestamptz 'infinity')

),

{% if is_incremental() %}

-- Ids: an episode that overlaps one written before keeps that one's alert_id (the
-- earliest such; a split leaves the id with its first part), looked up by the
-- (device_id, alert_type, started_at) index among the rows the build replaces.
-- A door alert's id is its session's by construction (one episode per session, its
-- start fixed by the open), so it needs no lookup.
claims as (

    select
        computed.*,
        coalesce(computed.continued_alert_id, previous.alert_id) as previous_alert_id,
        row_number() over (
            partition by coalesce(computed.continued_alert_id, previous.alert_id)
            order by computed.started_at
        ) as claim_rank

    from computed
    left join scope
        on scope.device_id = computed.device_id
        and scope.alert_type = computed.alert_type
    -- Episodes of a type never overlap, so the earliest old one overlapping this one is
    -- the latest starting before it (if it reaches this one's start), else the first
    -- starting within it: two index probes, however many episodes the scope holds.
    left join lateral (
        select candidates.alert_id
        from (
            select before.alert_id, before.started_at
            from (
                select alerts.alert_id, alerts.started_at, alerts.ended_at
                from {{ this }} as alerts
                where alerts.device_id = computed.device_id
                  and alerts.alert_type = computed.alert_type
                  and alerts.started_at >= scope.since_at
                  and alerts.started_at < computed.started_at
                order by alerts.started_at desc
                limit 1
            ) as before
            where coalesce(before.ended_at, timestamptz 'infinity') >= computed.started_at

            union all

            select within.alert_id, within.started_at
            from (
                select alerts.alert_id, alerts.started_at
                from {{ this }} as alerts
                where alerts.device_id = computed.device_id
                  and alerts.alert_type = computed.alert_type
                  and alerts.started_at >= computed.started_at
                  and alerts.started_at <= coalesce(computed.ended_at, timestamptz 'infinity')
                order by alerts.started_at
                limit 1
            ) as within
        ) as candidates
        order by candidates.started_at
        limit 1
    ) as previous
        on computed.alert_type <> 'door_left_open'
        and computed.continued_alert_id is null

),

{% else %}

claims as (

    select computed.*, null::text as previous_alert_id, 1 as claim_rank
    from computed

),

{% endif %}

final as (

    select
        case
            when claims.previous_alert_id is not null and claims.claim_rank = 1
                then claims.previous_alert_id
            else md5(concat_ws('|', claims.alert_type, claims.device_id,
                extract(epoch from claims.started_at)::text))
        end as alert_id,
        claims.alert_type,
        claims.device_id,
        claims.household_id,
        claims.started_at,
        claims.ended_at,
        claims.is_open,
        claims.severity,
        {{ reference_at() }} as evaluated_at,
        {{ run_started_at_ts() }} as transformed_at

    from claims

)

select * from final
