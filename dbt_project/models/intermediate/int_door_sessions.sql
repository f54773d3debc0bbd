{{
    config(
        materialized='incremental',
        unique_key='session_id',
        incremental_strategy='merge',
        on_schema_change='fail',
        indexes=[
            {'columns': ['session_id'], 'unique': True},
            {'columns': ['device_id', 'opened_at']},
        ],
    )
}}
-- A door session starts at an open and ends at the device's next open or close
-- (ordered by event_at, then event_id):
--   next is a close -> end_reason 'closed', closed_at set, duration known;
--   next is an open -> end_reason 'reopened' (the close never came: two opens in a row);
--   nothing yet     -> end_reason null, is_still_open.
-- A close with no open before it (close before open) starts no session.
-- Fails are not state changes and are ignored here.
--
-- Incremental: for each device with door events written since the last run, the
-- sessions from its last open/close *before* the earliest such event are rebuilt;
-- nothing earlier can change, so this equals a full rebuild, however late the event.

with

{% if is_incremental() %}

changed as (

    select
        events.device_id,
        min(events.event_at) as first_changed_at
    from {{ ref('fct_access_events') }} as events
    where events.transformed_at > (
        select coalesce(max(transformed_at), timestamptz '-infinity') from {{ this }}
    )
    and events.event_type in ('open', 'close')
    group by events.device_id

),

anchors as (

    select
        changed.device_id,
        coalesce(
            (
                select max(earlier.event_at)
                from {{ ref('fct_access_events') }} as earlier
                where earlier.device_id = changed.device_id
                  and earlier.event_type in ('open', 'close')
                  and earlier.event_at < changed.first_changed_at
            ),
            timestamptz '-infinity'
        ) as rebuild_from_at
    from changed

),

door_events as (

    select fct.*
    from anchors
    inner join {{ ref('fct_access_events') }} as fct
        on fct.device_id = anchors.device_id
        and fct.event_at >= anchors.rebuild_from_at
    where fct.event_type in ('open', 'close')

),

{% else %}

door_events as (

    select * from {{ ref('fct_access_events') }}
    where event_type in ('open', 'close')

),

{% endif %}

sequenced as (

    select
        door_events.event_id,
        door_events.device_id,
        door_events.household_id,
        door_events.event_type,
        door_events.event_at,
        lead(door_events.event_type) over device_order as next_event_type,
        lead(door_events.event_at) over device_order as next_event_at

    from door_events
    window device_order as (
        partition by door_events.device_id
        order by door_events.event_at, door_events.event_id
    )

),

sessions as (

    select
        sequenced.event_id as session_id,
        sequenced.device_id,
        sequenced.household_id,
        sequenced.event_at as opened_at,
        case when sequenced.next_event_type = 'close' then sequenced.next_event_at end
            as closed_at,
        sequenced.next_event_at as ended_at,
        case sequenced.next_event_type
            when 'close' then 'closed'
            when 'open' then 'reopened'
        end as end_reason,
        sequenced.next_event_type is null as is_still_open,
        extract(epoch from sequenced.next_event_at - sequenced.event_at)::numeric
            as duration_seconds,
        {{ run_started_at_ts() }} as transformed_at

    from sequenced
    where sequenced.event_type = 'open'

)

select * from sessions
