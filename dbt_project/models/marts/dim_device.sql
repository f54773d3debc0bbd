-- Every version of every device from the registry changelog (SCD2): the current row
-- (is_current) and its history, e.g. a firmware rollout. valid_to_at is null on the
-- current version.
with

versions as (

    select * from {{ ref('int_device_versions_ranged') }}

),

final as (

    select
        versions.device_version_id,
        versions.device_id,
        versions.household_id,
        versions.device_type,
        versions.model,
        versions.firmware_version,
        versions.device_status,
        versions.region,
        versions.timezone,
        versions.installed_at,
        versions.valid_from_at,
        versions.valid_to_at,
        versions.is_current

    from versions

)

select * from final
