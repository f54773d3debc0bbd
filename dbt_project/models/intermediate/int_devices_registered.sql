-- The registry's current state: each device's latest change (by updated_at; a
-- late-landing older change never wins). The snapshot reads this.
with

changes as (

    select * from {{ ref('stg_smart_access__device_registry') }}

),

latest as (

    select distinct on (changes.device_id)
        changes.device_id,
        changes.household_id,
        changes.device_type,
        changes.model,
        changes.firmware_version,
        changes.installed_at,
        changes.device_status,
        changes.region,
        changes.timezone,
        changes.updated_at

    from changes
    order by changes.device_id, changes.updated_at desc, changes.ingested_at desc

)

select * from latest
