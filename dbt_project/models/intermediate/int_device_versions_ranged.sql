-- Every version of every device, derived from the registry's changelog (SCD2): a
-- version starts at its change's updated_at and ends where the device's next change
-- starts (lead(updated_at)), null for the current one. It is a function of the
-- changes alone - not of when builds ran - so several changes between two builds,
-- and a late change older than the current version, each get their version, and a
-- full refresh gives the same history. Half-open validity for "which version was
-- valid at time t": [effective_from_at, effective_to_at); the first version reaches
-- back to -infinity so events before the device's first registry record still get
-- its attributes, the current one reaches to +infinity. Changes up to the build's
-- window bound only, like every reader of raw.
with

changes as (

    select * from {{ ref('stg_smart_access__device_registry') }}
    where {{ ingested_window('device_registry', 'ingested_at', lower=false) }}

),

-- A removal (a tombstone on the registry topic) closes the device's version and
-- starts a last one, retired, that keeps the attributes of the registration before
-- it: every rule for retired devices (no alerts, not counted as active) applies.
grouped as (

    select
        changes.*,
        count(*) filter (where changes.device_status <> 'removed') over (
            partition by changes.device_id order by changes.updated_at
            rows between unbounded preceding and current row
        ) as registration_number

    from changes

),

filled as (

    select
        grouped.device_id,
        first_value(grouped.household_id) over registration as household_id,
        first_value(grouped.device_type) over registration as device_type,
        first_value(grouped.model) over registration as model,
        first_value(grouped.firmware_version) over registration as firmware_version,
        first_value(grouped.installed_at) over registration as installed_at,
        case grouped.device_status when 'removed' then 'retired' else grouped.device_status end
            as device_status,
        first_value(grouped.region) over registration as region,
        first_value(grouped.timezone) over registration as timezone,
        grouped.updated_at

    from grouped
    where grouped.registration_number > 0  -- a removal of a device never registered
    window registration as (
        partition by grouped.device_id, grouped.registration_number order by grouped.updated_at
    )

),

sequenced as (

    select
        filled.*,
        lead(filled.updated_at) over device_order as next_updated_at,
        row_number() over device_order as version_number

    from filled
    window device_order as (partition by filled.device_id order by filled.updated_at)

),

ranged as (

    select
        md5(sequenced.device_id || '|' || extract(epoch from sequenced.updated_at)::text)
            as device_version_id,
        sequenced.device_id,
        sequenced.household_id,
        sequenced.device_type,
        sequenced.model,
        sequenced.firmware_version,
        sequenced.installed_at,
        sequenced.device_status,
        sequenced.region,
        sequenced.timezone,
        sequenced.updated_at as valid_from_at,
        sequenced.next_updated_at as valid_to_at,
        sequenced.next_updated_at is null as is_current,
        case
            when sequenced.version_number = 1 then timestamptz '-infinity'
            else sequenced.updated_at
        end as effective_from_at,
        coalesce(sequenced.next_updated_at, timestamptz 'infinity') as effective_to_at

    from sequenced

)

select * from ranged
