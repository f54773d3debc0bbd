{# fct_alerts is incremental: each build recomputes, per device and alert type, only
   the episodes from `since_at` on, where since_at is the earliest instant the new
   data or the moved reference time can change:
     repeated_failures  the earliest fail written since the previous build
     door_left_open     one point per session (an episode is a session's): each
                        rewritten session's open + door_open_minutes, and each
                        still-open session that may have crossed the threshold since
                        the previous reference (since_at = until_at)
     low_battery        the earliest health report of the build's window
     offline            offline_minutes after the report before that one (the gap it
                        ends); a device whose silence crossed offline_minutes since
                        the previous reference (offline by absence)
     all types          an open alert's start (its severity and end depend on the
                        reference); a registry change (household, retirement) reaches
                        back to -infinity
   and then back to the start of an existing episode of that type still running at
   since_at (episodes of one type never overlap, so the latest one before is the only
   candidate). The scope lives in a temporary table of the build's session: the model
   reads it, and its post-hook deletes the superseded rows. #}

{% macro alert_scope_relation() -%}
    pg_temp.fct_alerts_scope
{%- endmacro %}

{% macro previous_alert_reference(alerts) -%}
    (select coalesce(max(previous.evaluated_at), timestamptz '-infinity') from {{ alerts }} as previous)
{%- endmacro %}

{% macro create_alert_scope() %}
    {%- if not is_incremental() -%}
        select 1
    {%- else -%}
drop table if exists {{ alert_scope_relation() }};
create temporary table fct_alerts_scope as
with

reference as (

    select
        {{ reference_at() }} as reference_at,
        {{ previous_alert_reference(this) }} as previous_reference_at

),

candidates as (

    select events.device_id, 'repeated_failures' as alert_type, min(events.event_at) as since_at
    from {{ ref('fct_access_events') }} as events
    where {{ written_since_previous_build('events.transformed_at') }}
      and events.event_type = 'fail'
    group by events.device_id

    union all

    -- Door alerts are one per session: the rewritten sessions, and the still-open ones
    -- that may have crossed the threshold, each on its own (a point scope).
    select sessions.device_id, 'door_left_open',
        sessions.opened_at + {{ minutes_var('door_open_minutes') }}
    from {{ ref('int_door_sessions') }} as sessions
    where {{ written_since_previous_build('sessions.transformed_at') }}

    union all

    select sessions.device_id, 'door_left_open',
        sessions.opened_at + {{ minutes_var('door_open_minutes') }}
    from {{ ref('int_door_sessions') }} as sessions
    cross join reference
    where sessions.opened_at
        >= reference.previous_reference_at - {{ minutes_var('door_open_minutes') }}
      and sessions.is_still_open

    union all

    select health.device_id, 'low_battery', min(health.reported_at)
    from {{ ref('stg_smart_access__device_health') }} as health
    where {{ ingested_window('device_health', 'health.ingested_at') }}
    group by health.device_id

    union all

    -- A new report ends the gap since the report before it: an offline episode
    -- starting offline_minutes after that one.
    select landed.device_id, 'offline',
        coalesce(before.reported_at + {{ minutes_var('offline_minutes') }}, landed.first_reported_at)
    from (
        select health.device_id, min(health.reported_at) as first_reported_at
        from {{ ref('stg_smart_access__device_health') }} as health
        where {{ ingested_window('device_health', 'health.ingested_at') }}
        group by health.device_id
    ) as landed
    left join lateral (
        select max(earlier.reported_at) as reported_at
        from {{ ref('int_device_health_reports') }} as earlier
        where earlier.device_id = landed.device_id
          and earlier.reported_at < landed.first_reported_at
    ) as before on true

    union all

    select latest.device_id, 'offline', latest.reported_at
    from {{ ref('int_device_health_latest') }} as latest
    cross join reference
    where latest.reported_at + {{ minutes_var('offline_minutes') }}
        >= reference.previous_reference_at

    union all

    -- Registered devices that never reported: offline by absence from registration.
    select devices.device_id, 'offline', timestamptz '-infinity'
    from {{ ref('dim_device') }} as devices
    where devices.is_current
      and not exists (
        select 1 from {{ ref('int_device_health_latest') }} as latest
        where latest.device_id = devices.device_id
      )
    union all

    select alerts.device_id, alerts.alert_type, min(alerts.started_at)
    from {{ this }} as alerts
    where alerts.is_open
    group by alerts.device_id, alerts.alert_type

    union all

    select distinct changes.device_id, alert_types.alert_type, timestamptz '-infinity'
    from {{ ref('stg_smart_access__device_registry') }} as changes
    cross join (
        values ('repeated_failures'), ('door_left_open'), ('low_battery'), ('offline')
    ) as alert_types (alert_type)
    where {{ ingested_window('device_registry', 'changes.ingested_at') }}

),

scoped as (

    -- Door: one scope row per alert start (point); other types: from the earliest
    -- candidate on. A registry change's -infinity makes a door scope open-ended too.
    select
        candidates.device_id,
        candidates.alert_type,
        min(candidates.since_at) as since_at,
        case
            when candidates.alert_type = 'door_left_open'
                and min(candidates.since_at) > timestamptz '-infinity'
                then max(candidates.since_at)
            else timestamptz 'infinity'
        end as until_at
    from candidates
    group by
        candidates.device_id,
        candidates.alert_type,
        case
            when candidates.alert_type = 'door_left_open' then candidates.since_at
        end

)

select
    scoped.device_id,
    scoped.alert_type,
    case
        when scoped.alert_type = 'door_left_open' then scoped.since_at
        else least(scoped.since_at, coalesce(running.started_at, timestamptz 'infinity'))
    end as since_at,
    scoped.until_at
from scoped
left join lateral (
    select latest_before.started_at
    from (
        select alerts.started_at, alerts.ended_at
        from {{ this }} as alerts
        where alerts.device_id = scoped.device_id
          and alerts.alert_type = scoped.alert_type
          and alerts.started_at < scoped.since_at
        order by alerts.started_at desc
        limit 1
    ) as latest_before
    where coalesce(latest_before.ended_at, timestamptz 'infinity') >= scoped.since_at
) as running on true
-- A device's open-ended door scope (a registry change) covers its point scopes.
where not (
    scoped.alert_type = 'door_left_open'
    and scoped.until_at < timestamptz 'infinity'
    and exists (
        select 1 from scoped as wide
        where wide.device_id = scoped.device_id
          and wide.alert_type = 'door_left_open'
          and wide.until_at = timestamptz 'infinity'
    )
);
analyze {{ alert_scope_relation() }}
    {%- endif -%}
{% endmacro %}

{# After the recomputed episodes are appended: the rows they replace go. #}
{% macro delete_superseded_alerts() %}
    {%- if not is_incremental() -%}
        select 1
    {%- else -%}
delete from {{ this }} as alerts
using {{ alert_scope_relation() }} as scope
where alerts.device_id = scope.device_id
  and alerts.alert_type = scope.alert_type
  and alerts.started_at >= scope.since_at
  and alerts.started_at <= scope.until_at
  and alerts.transformed_at < {{ run_started_at_ts() }}
    {%- endif -%}
{% endmacro %}
