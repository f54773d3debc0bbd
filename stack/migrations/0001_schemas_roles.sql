-- Schemas of the warehouse and the three least-privilege roles.
--   smart_access_loader       lands data: writes raw.* and ops.* rows, nothing else
--   smart_access_transformer  dbt: reads raw, owns staging/intermediate/marts/snapshots
--   smart_access_analyst      dashboard and psql: reads marts and ops, read-only
-- Passwords are set by the migration runner from the environment, never here.

create schema if not exists raw;
create schema if not exists ops;
create schema if not exists staging;
create schema if not exists intermediate;
create schema if not exists marts;
create schema if not exists snapshots;

do $$
declare
    role_name text;
begin
    foreach role_name in array array[
        'smart_access_loader', 'smart_access_transformer', 'smart_access_analyst'
    ] loop
        if not exists (select 1 from pg_roles where rolname = role_name) then
            execute format('create role %I login', role_name);
        end if;
    end loop;
end
$$;

alter role smart_access_analyst set default_transaction_read_only = on;

revoke create on schema public from public;

grant usage on schema raw, ops to smart_access_loader;
grant usage on schema raw, ops to smart_access_transformer;
grant usage, create on schema staging, intermediate, marts, snapshots to smart_access_transformer;
grant usage on schema marts, ops, staging, intermediate, snapshots to smart_access_analyst;

-- Whatever dbt builds is readable by the analyst without a grant per model.
alter default privileges for role smart_access_transformer in schema staging, intermediate, marts, snapshots
    grant select on tables to smart_access_analyst;
