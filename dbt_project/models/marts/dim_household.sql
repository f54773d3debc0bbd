-- One row per household that has a device in the registry now. Region and time
-- zone come from its most recently changed device (they describe the household).
with

devices as (

    select * from {{ ref('dim_device') }}
    where is_current

),

location as (

    select distinct on (devices.household_id)
        devices.household_id,
        devices.region,
        devices.timezone
    from devices
    order by devices.household_id, devices.valid_from_at desc, devices.device_id

),

counts as (

    select
        devices.household_id,
        count(*) as device_count,
        count(*) filter (where devices.device_status = 'active') as active_device_count,
        min(devices.installed_at) as first_installed_at
    from devices
    group by devices.household_id

),

final as (

    select
        counts.household_id,
        location.region,
        location.timezone,
        counts.device_count,
        counts.active_device_count,
        counts.first_installed_at

    from counts
    inner join location on location.household_id = counts.household_id

)

select * from final
