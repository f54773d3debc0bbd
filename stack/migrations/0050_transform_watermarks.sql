-- Commit-safe transform watermarks.
--
-- The loader stamps every raw row with `_ingested_at = clock_timestamp()` inside the
-- transaction that commits it together with ops.consumer_offsets and
-- ops.ingest_batches. A row of a transaction still open can therefore only carry a
-- stamp at or after that transaction's start. `ops.transform_safe_bound()` returns
-- the instant before which every row of this database is committed (or will never
-- be): the start of the oldest transaction that still holds a transaction id
-- (the one that pins `pg_snapshot_xmin`), or the clock when none is open.
-- A build reads raw rows with `_ingested_at` in (ingested_through, new bound) and only
-- then moves `ingested_through`: nothing that commits later can land behind it.

create table if not exists ops.transform_watermarks (
    source_table       text        primary key,
    -- every row of source_table with _ingested_at <= this has been transformed
    ingested_through   timestamptz not null,
    -- the commit-safe bound and the snapshot's xmin observed by the build that moved it
    safe_before        timestamptz not null,
    snapshot_xmin      xid8,
    -- the transformed_at stamp of that build (downstream models read rows written after
    -- the previous successful build's stamp)
    build_transformed_at timestamptz not null,
    invocation_id      text,
    updated_at         timestamptz not null default clock_timestamp()
);

-- Newest record time (Kafka timestamp, else landing time) landed per partition: the
-- data watermark is the oldest of them, so one lagging partition holds the alert
-- rules' reference time back instead of making its devices look offline.
create table if not exists ops.transform_partition_watermarks (
    source_table       text        not null,
    kafka_topic        text        not null,
    kafka_partition    integer     not null,
    newest_record_at   timestamptz not null,
    updated_at         timestamptz not null default clock_timestamp(),
    primary key (source_table, kafka_topic, kafka_partition)
);

create or replace function ops.transform_safe_bound(
    out safe_before timestamptz,
    out snapshot_xmin xid8,
    out oldest_writer_pid integer,
    out oldest_writer_started_at timestamptz
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    clock_at timestamptz;
begin
    -- The clock first: a transaction that takes its id after the activity read below
    -- stamps its rows later than this.
    clock_at := clock_timestamp();
    snapshot_xmin := pg_snapshot_xmin(pg_current_snapshot());
    select writers.pid, writers.started_at
    into oldest_writer_pid, oldest_writer_started_at
    from (
        select activity.pid, activity.xact_start as started_at
        from pg_stat_activity as activity
        where activity.backend_xid is not null
          and activity.datname = current_database()
          and activity.pid <> pg_backend_pid()
        union all
        -- A prepared transaction's rows may be older than its prepare time: it holds
        -- the bound still until it is resolved.
        select null::integer, timestamptz '-infinity'
        from pg_prepared_xacts as prepared
        where prepared.database = current_database()
    ) as writers
    order by writers.started_at
    limit 1;
    safe_before := least(clock_at, coalesce(oldest_writer_started_at, clock_at));
end;
$$;

revoke all on function ops.transform_safe_bound() from public;
grant execute on function ops.transform_safe_bound() to smart_access_transformer;
grant select, insert, update, delete on ops.transform_watermarks,
    ops.transform_partition_watermarks to smart_access_transformer;
grant select on ops.transform_watermarks, ops.transform_partition_watermarks
    to smart_access_analyst;
