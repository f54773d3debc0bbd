-- How a build finds "the rows written since X", measured on the benchmark's data.
--
-- marts.fct_access_events: the build stamp gets a b-tree again (replacing 0052's
-- BRIN). With a BRIN the planner has no estimate for "transformed_at > the previous
-- build" (the value is past every statistic) and chose sequential scans of whole day
-- partitions, a cost that grows with history; and ranges written since the last
-- VACUUM are unsummarised, so a BRIN scan reads them all. A build's rows share one
-- stamp, so the b-tree's entries deduplicate and land at its right edge: appending
-- 900 k rows cost the same within noise (4.3-4.8 s against 4.1-5.4 s with the BRIN).

create index if not exists fct_access_events_transformed_at_idx
    on marts.fct_access_events (transformed_at);
drop index if exists marts.fct_access_events_transformed_at_brin;

-- raw.*: the consumer appends, so BRIN on _ingested_at stays the right index for a
-- build's window. PostgreSQL summarises a range only at VACUUM, or - with
-- autosummarize - soon after the next range starts (an autovacuum work item); until
-- then every scan reads the range. On a large table an insert-only VACUUM comes
-- every 20 % of its rows, so hours of rows could be unsummarised at each build.
alter index raw.access_events_ingested_at_brin set (autosummarize = on);
alter index raw.device_health_ingested_at_brin set (autosummarize = on);
alter index raw.device_registry_ingested_at_brin set (autosummarize = on);
alter index raw.dead_letters_ingested_at_brin set (autosummarize = on);

-- And each build summarises what is left before it reads (dbt's on-run-start): the
-- transformer does not own raw, so it calls this owner's function. It reads only
-- the unsummarised pages, and skips an index that a VACUUM is summarising right now
-- instead of waiting for it.
create or replace function ops.summarize_raw_brin_ranges()
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '2s'
as $$
declare
    brin_index regclass;
    summarized integer := 0;
begin
    for brin_index in
        select indexes.indexrelid::regclass
        from pg_index as indexes
        join pg_class as index_class on index_class.oid = indexes.indexrelid
        join pg_am as methods on methods.oid = index_class.relam
        join pg_namespace as schemas on schemas.oid = index_class.relnamespace
        where schemas.nspname = 'raw' and methods.amname = 'brin' and index_class.relkind = 'i'
    loop
        begin
            summarized := summarized + brin_summarize_new_values(brin_index);
        exception when lock_not_available then
            null;
        end;
    end loop;
    return summarized;
end;
$$;

revoke all on function ops.summarize_raw_brin_ranges() from public;
grant execute on function ops.summarize_raw_brin_ranges() to smart_access_transformer;

-- No JIT for the transformer and the analyst. Their plans' cost estimates run to
-- millions for queries that take a second, which makes PostgreSQL compile and
-- optimise every expression with LLVM first: measured here, 1-4 s of JIT per
-- statement in a 15-minute build (a fifth of it), for plans that run in
-- milliseconds per row anyway. Takes effect at the roles' next login.
alter role smart_access_transformer set jit = off;
alter role smart_access_analyst set jit = off;
