-- Snapshot versions with a half-open validity range for "which version was valid at
-- time t": [effective_from_at, effective_to_at). The first version reaches back to
-- -infinity so events before the device's first registry record still get its
-- attributes; the current one reaches to +infinity.
with

versions as (

    select * from {{ ref('snap_device_registry') }}

),

ranged as (

    select
        versions.dbt_scd_id as device_version_id,
        versions.device_id,
        versions.household_id,
        versions.device_type,
        versions.model,
        versions.firmware_version,
        versions.installed_at,
        versions.device_status,
        versions.region,
        versions.timezone,
        versions.dbt_valid_from as valid_from_at,
        versions.dbt_valid_to as valid_to_at,
        versions.dbt_valid_to is null as is_current,
        case
            when row_number() over (
                partition by versions.device_id order by versions.dbt_valid_from
            ) = 1
                then timestamptz '-infinity'
            else versions.dbt_valid_from
        end as effective_from_at,
        coalesce(versions.dbt_valid_to, timestamptz 'infinity') as effective_to_at

    from versions

)

select * from ranged
