-- marts.fct_access_events: append-only, partitioned by event day (UTC).
--
-- dbt fills it (model fct_access_events, incremental strategy `partitioned_append`,
-- dbt_project/macros/partitioned_append.sql) and creates each day's partition before
-- it writes rows of that day, plus `fact_partitions_ahead_days` days ahead; late
-- events land in their old day's partition. Every index is local to a partition:
-- the key (event_id, event_at) - a resend has the same event_at, so it is found in
-- one partition - (device_id, event_at) for the per-device readers and
-- transformed_at for "rows written since the previous build", and the fails by
-- device for the alert rules. No index spans the
-- history, so a write costs the same on day 1 and on day 300.
--
-- A warehouse built before this migration has a plain table here: it is moved
-- aside to marts.fct_access_events_unpartitioned; rebuild once with
-- `python -m smart_access.transform --full-refresh` and drop it.

do $$
begin
    if exists (
        select 1 from pg_class as tables
        join pg_namespace as schemas on schemas.oid = tables.relnamespace
        where schemas.nspname = 'marts' and tables.relname = 'fct_access_events'
          and tables.relkind = 'r'
    ) then
        alter table marts.fct_access_events rename to fct_access_events_unpartitioned;
    end if;
end;
$$;

create table if not exists marts.fct_access_events (
    event_id           uuid        not null,
    device_id          text        not null,
    household_id       text        not null,
    event_at           timestamptz not null,
    event_type         text        not null,
    trigger_source     text        not null,
    user_id            text,
    failure_reason     text,
    device_version_id  text,
    device_type        text,
    model              text,
    firmware_version   text,
    region             text,
    kafka_topic        text        not null,
    kafka_partition    integer     not null,
    kafka_offset       bigint      not null,
    ingested_at        timestamptz not null,
    transformed_at     timestamptz not null
) partition by range (event_at);

create unique index if not exists fct_access_events_event_key
    on marts.fct_access_events (event_id, event_at);
create index if not exists fct_access_events_device_event_at_idx
    on marts.fct_access_events (device_id, event_at);
create index if not exists fct_access_events_transformed_at_idx
    on marts.fct_access_events (transformed_at);
-- fct_alerts' repeated-failure rule reads a device's fails around new ones: 2.5 % of
-- the rows, in their own small index.
create index if not exists fct_access_events_device_fails_idx
    on marts.fct_access_events (device_id, event_at) where event_type = 'fail';

alter table marts.fct_access_events owner to smart_access_transformer;
grant select on marts.fct_access_events to smart_access_analyst;
