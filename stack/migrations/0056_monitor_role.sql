-- smart_access_monitor: the role Prometheus' PostgreSQL exporter connects as.
-- PostgreSQL's own statistics through the built-in pg_monitor role, and exactly the
-- ops figures the alert rules need (stack/prometheus/postgres_queries.yml): when the
-- consumer last committed a batch, and the DAG's runs. Nothing of raw or the marts.
-- The password is set by the migration runner from the environment, as for the others.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'smart_access_monitor') then
        create role smart_access_monitor login;
    end if;
end
$$;

grant pg_monitor to smart_access_monitor;
alter role smart_access_monitor set default_transaction_read_only = on;
alter role smart_access_monitor set statement_timeout = '5s';
alter role smart_access_monitor set jit = off;
grant usage on schema ops to smart_access_monitor;
grant select on ops.ingest_batches, ops.pipeline_runs to smart_access_monitor;
