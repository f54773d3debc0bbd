{{
    config(
        materialized='incremental',
        unique_key=['opened_at', 'session_id'],
        incremental_strategy='upsert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['opened_at', 'session_id'], 'unique': True},
            {'columns': ['device_id', 'opened_at']},
            {'columns': ['transformed_at']},
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
-- Incremental: a door event written since the last run changes at most the session
-- of the open just before it and, if it is an open, its own. The changed events of a
-- device are grouped into stretches: a new one starts where the gap to the device's
-- previous changed event exceeds `door_session_stretch_gap_seconds` (60). Each
-- stretch is resequenced from the device's last open/close before it up to the first
-- one after it, and the opens from that anchor to the stretch's last changed event are
-- rewritten. So a late event costs a few rows however old it is - also when other
-- late events of the device fall in the same hour, with unchanged events between them
-- - and the result equals a full rebuild whatever the gap: it only sets how much is
-- resequenced.

with

{% if is_incremental() %}

changed_events as (

    select
        events.device_id,
        events.event_at
    from {{ ref('fct_access_events') }} as events
    where {{ written_since_previous_build('events.transformed_at') }}
    and events.event_type in ('open', 'close')

),

stretch_starts as (

    select
        changed_events.device_id,
        changed_events.event_at,
        case
            when changed_events.event_at - lag(changed_events.event_at) over device_order
                <= interval '{{ var("door_session_stretch_gap_seconds", 60) | int }} seconds'
                then 0
            else 1
        end as starts_stretch
    from changed_events
    window device_order as (
        partition by changed_events.device_id order by changed_events.event_at
    )

),

numbered as (

    select
        stretch_starts.device_id,
        stretch_starts.event_at,
        -- the default frame takes in events of the same moment: they share a stretch
        sum(stretch_starts.starts_stretch) over (
            partition by stretch_starts.device_id order by stretch_starts.event_at
        ) as stretch_number
    from stretch_starts

),

stretches as (

    select
        numbered.device_id,
        numbered.stretch_number,
        min(numbered.event_at) as first_changed_at,
        max(numbered.event_at) as last_changed_at,
        -- Two stretches can share one open (the later one's anchor is the earlier
        -- one's last event): the earlier stretch writes it.
        coalesce(
            lag(max(numbered.event_at)) over (
                partition by numbered.device_id order by numbered.stretch_number
            ),
            timestamptz '-infinity'
        ) as previous_last_changed_at
    from numbered
    group by numbered.device_id, numbered.stretch_number

),

bounds as (

    select
        stretches.device_id,
        stretches.stretch_number,
        stretches.last_changed_at,
        stretches.previous_last_changed_at,
        coalesce(
            (
                select max(earlier.event_at)
                from {{ ref('fct_access_events') }} as earlier
                where earlier.device_id = stretches.device_id
                  and earlier.event_type in ('open', 'close')
                  and earlier.event_at < stretches.first_changed_at
            ),
            timestamptz '-infinity'
        ) as rebuild_from_at,
        coalesce(
            (
                select min(later.event_at)
                from {{ ref('fct_access_events') }} as later
                where later.device_id = stretches.device_id
                  and later.event_type in ('open', 'close')
                  and later.event_at > stretches.last_changed_at
            ),
            timestamptz 'infinity'
        ) as read_until_at
    from stretches

),

door_events as (

    select
        fct.event_id,
        fct.device_id,
        fct.household_id,
        fct.event_type,
        fct.event_at,
        bounds.stretch_number,
        fct.event_at <= bounds.last_changed_at
            and fct.event_at > bounds.previous_last_changed_at as is_rewritten
    from bounds
    inner join {{ ref('fct_access_events') }} as fct
        on fct.device_id = bounds.device_id
        and fct.event_at >= bounds.rebuild_from_at
        and fct.event_at <= bounds.read_until_at
    where fct.event_type in ('open', 'close')

),

{% else %}

door_events as (

    select
        fct.event_id,
        fct.device_id,
        fct.household_id,
        fct.event_type,
        fct.event_at,
        0 as stretch_number,
        true as is_rewritten
    from {{ ref('fct_access_events') }} as fct
    where fct.event_type in ('open', 'close')

),

{% endif %}

sequenced as (

    select
        door_events.event_id,
        door_events.device_id,
        door_events.household_id,
        door_events.event_type,
        door_events.event_at,
        door_events.is_rewritten,
        lead(door_events.event_type) over device_order as next_event_type,
        lead(door_events.event_at) over device_order as next_event_at

    from door_events
    window device_order as (
        partition by door_events.device_id, door_events.stretch_number
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
      and sequenced.is_rewritten

)

select * from sessions
{% if is_incremental() -%}
-- In key order, the upsert's probes of the (opened_at, session_id) index walk its
-- leaf pages once.
order by sessions.opened_at, sessions.session_id
{%- endif %}
