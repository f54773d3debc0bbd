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

sequenced as (

    select
        changes.*,
        lead(changes.updated_at) over device_order as next_updated_at,
        row_number() over device_order as version_number

    from changes
    window device_order as (partition by changes.device_id order by changes.updated_at)

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
