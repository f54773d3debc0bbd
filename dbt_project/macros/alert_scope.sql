{# fct_alerts is incremental. Each build recomputes two scopes, kept in temporary
   tables of the build's session (the model reads them; its incremental strategy,
   below, deletes the rows they supersede):

   fct_alerts_scope, one row per device and per-device rule, with `since_at`: the
   earliest instant the new data or the moved reference time can change -
     repeated_failures  the earliest fail written since the previous build
     low_battery        the earliest health report of the build's window
     offline            offline_minutes after the arrival before the build's first
                        (the gap it ends); a device whose silence crossed
                        offline_minutes since the previous reference (offline by
                        absence); a registered device that never reported
     all of them        an open alert's start (its severity and end depend on the
                        reference); a registry change (household, retirement) reaches
                        back to -infinity
   and then back to the start of an existing episode of that type still running at
   since_at (episodes of one type never overlap, so the latest one before is the
   only candidate);

   fct_alerts_door_scope, the door sessions whose door_left_open alert is
   recomputed (an episode is one session's, so a late event costs the sessions it
   rewrites, however old): the sessions written since the previous build that last
   longer than door_open_minutes or had an alert, the still-open ones that may have crossed door_open_minutes since the previous
   reference, those whose alert is open, and every session of a device whose
   registry changed. #}

{% macro alert_scope_relation() -%}
    pg_temp.fct_alerts_scope
{%- endmacro %}

{% macro door_scope_relation() -%}
    pg_temp.fct_alerts_door_scope
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

    -- Fails written before but after the previous reference: read for the first time.
    select events.device_id, 'repeated_failures', min(events.event_at)
    from {{ ref('fct_access_events') }} as events
    cross join reference
    where events.event_at > reference.previous_reference_at
      and events.event_at <= reference.reference_at
      and events.event_type = 'fail'
    group by events.device_id

    union all

    select health.device_id, 'low_battery', min(health.reported_at)
    from {{ ref('stg_smart_access__device_health') }} as health
    where {{ ingested_window('device_health', 'health.ingested_at') }}
    group by health.device_id

    union all

    select health.device_id, 'low_battery', min(health.reported_at)
    from {{ ref('int_device_health_reports') }} as health
    cross join reference
    where health.reported_at > reference.previous_reference_at
      and health.reported_at <= reference.reference_at
    group by health.device_id

    union all

    -- A new arrival ends the gap since the arrival before it: an offline episode
    -- starting offline_minutes after that one.
    select landed.device_id, 'offline',
        coalesce(before.arrived_at + {{ minutes_var('offline_minutes') }}, landed.first_arrived_at)
    from (
        select health.device_id, min(health.arrived_at) as first_arrived_at
        from {{ ref('stg_smart_access__device_health') }} as health
        where {{ ingested_window('device_health', 'health.ingested_at') }}
        group by health.device_id
    ) as landed
    left join lateral (
        select max(earlier.arrived_at) as arrived_at
        from {{ ref('int_device_health_reports') }} as earlier
        where earlier.device_id = landed.device_id
          and earlier.arrived_at < landed.first_arrived_at
    ) as before on true

    union all

    select latest.device_id, 'offline', latest.last_arrived_at
    from {{ ref('int_device_health_latest') }} as latest
    cross join reference
    where latest.last_arrived_at + {{ minutes_var('offline_minutes') }}
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

    -- An open alert may end or turn critical as the reference moves: offline from its
    -- start; the others from the previous reference, continuing the running episode.
    select alerts.device_id, alerts.alert_type,
        case
            when alerts.alert_type = 'offline' then min(alerts.started_at)
            else max(reference.previous_reference_at)
        end
    from {{ this }} as alerts
    cross join reference
    where alerts.is_open
      and alerts.alert_type <> 'door_left_open'
    group by alerts.device_id, alerts.alert_type

    union all

    select distinct changes.device_id, alert_types.alert_type, timestamptz '-infinity'
    from {{ ref('stg_smart_access__device_registry') }} as changes
    cross join (
        values ('repeated_failures'), ('low_battery'), ('offline')
    ) as alert_types (alert_type)
    where {{ ingested_window('device_registry', 'changes.ingested_at') }}

),

scoped as (

    select candidates.device_id, candidates.alert_type, min(candidates.since_at) as since_at
    from candidates
    group by candidates.device_id, candidates.alert_type

)

-- The episode of the type running at since_at, if any: offline reaches back to its
-- start (its gap has no reports to re-read). Repeated failures and low battery
-- continue it instead (running_*): the model reads from since_at (a warning
-- repeated-failures episode, a few fails, from its start), and the episode it
-- computes there keeps the running one's start, id, household and a critical
-- severity - so an episode that lasts for weeks costs its new rows, not its history.
select
    scoped.device_id,
    scoped.alert_type,
    case
        when scoped.alert_type = 'offline'
            then least(scoped.since_at, coalesce(running.started_at, timestamptz 'infinity'))
        else scoped.since_at
    end as since_at,
    case when scoped.alert_type <> 'offline' then running.alert_id end as running_alert_id,
    case when scoped.alert_type <> 'offline' then running.started_at end as running_started_at,
    case when scoped.alert_type <> 'offline' then running.household_id end
        as running_household_id,
    case when scoped.alert_type <> 'offline' then running.severity end as running_severity
from scoped
left join lateral (
    select latest_before.*
    from (
        select alerts.alert_id, alerts.started_at, alerts.ended_at, alerts.household_id,
            alerts.severity
        from {{ this }} as alerts
        where alerts.device_id = scoped.device_id
          and alerts.alert_type = scoped.alert_type
          and alerts.started_at < scoped.since_at
        order by alerts.started_at desc
        limit 1
    ) as latest_before
    where coalesce(latest_before.ended_at, timestamptz 'infinity') >= scoped.since_at
) as running on true;
create index on {{ alert_scope_relation() }} (device_id, alert_type);
analyze {{ alert_scope_relation() }};

drop table if exists {{ door_scope_relation() }};
create temporary table fct_alerts_door_scope as
with

reference as (

    select {{ previous_alert_reference(this) }} as previous_reference_at

),

rewritten as (

    select sessions.*
    from {{ ref('int_door_sessions') }} as sessions
    where {{ written_since_previous_build('sessions.transformed_at') }}

),

door_sessions as (

    -- Rewritten sessions long enough for an alert (or still open) ...
    select rewritten.*
    from rewritten
    where rewritten.ended_at is null
       or rewritten.ended_at - rewritten.opened_at > {{ minutes_var('door_open_minutes') }}

    union

    -- ... and those that had one (a late event shortened them).
    select rewritten.*
    from {{ this }} as alerts
    inner join rewritten
        on rewritten.device_id = alerts.device_id
        and rewritten.opened_at = alerts.started_at - {{ minutes_var('door_open_minutes') }}
    where alerts.alert_type = 'door_left_open'
      and alerts.started_at >= (
        select min(earliest.opened_at) + {{ minutes_var('door_open_minutes') }}
        from rewritten as earliest
      )

    union

    select sessions.*
    from {{ ref('int_door_sessions') }} as sessions
    cross join reference
    where sessions.opened_at
        >= reference.previous_reference_at - {{ minutes_var('door_open_minutes') }}
      and sessions.is_still_open

    union

    select sessions.*
    from {{ this }} as alerts
    inner join {{ ref('int_door_sessions') }} as sessions
        on sessions.device_id = alerts.device_id
        and sessions.opened_at = alerts.started_at - {{ minutes_var('door_open_minutes') }}
    where alerts.is_open
      and alerts.alert_type = 'door_left_open'

    union

    select sessions.*
    from (
        select distinct changes.device_id
        from {{ ref('stg_smart_access__device_registry') }} as changes
        where {{ ingested_window('device_registry', 'changes.ingested_at') }}
    ) as changed
    inner join {{ ref('int_door_sessions') }} as sessions
        on sessions.device_id = changed.device_id

)

select * from door_sessions;
create index on {{ door_scope_relation() }} (device_id, opened_at);
analyze {{ door_scope_relation() }}
    {%- endif -%}
{% endmacro %}

{# Incremental strategy of fct_alerts: the rows the scopes cover go, then the
   recomputed episodes (already computed into the build's temporary relation, ids
   claimed from the rows they replace) are inserted - in that order, so the unique
   index on alert_id holds at every step. #}
{% macro get_incremental_replace_alert_scope_sql(arg_dict) %}
    {%- set target = arg_dict["target_relation"] -%}
    {%- set source = arg_dict["temp_relation"] -%}
    {%- set columns = arg_dict["dest_columns"] | map(attribute="quoted") | join(", ") -%}
delete from {{ target }} as alerts
using {{ alert_scope_relation() }} as scope
where alerts.device_id = scope.device_id
  and alerts.alert_type = scope.alert_type
  and alerts.started_at >= scope.since_at;
delete from {{ target }} as alerts
using {{ alert_scope_relation() }} as scope
where alerts.alert_id = scope.running_alert_id;
delete from {{ target }} as alerts
using {{ door_scope_relation() }} as sessions
where alerts.alert_type = 'door_left_open'
  and alerts.device_id = sessions.device_id
  and alerts.started_at = sessions.opened_at + {{ minutes_var('door_open_minutes') }};
insert into {{ target }} ({{ columns }})
select {{ columns }} from {{ source }}
{% endmacro %}
