-- What dbt did, where the dashboard and operators can read it: one row per dbt
-- invocation, one per node (model, test, snapshot, unit test) it ran, and one per
-- source table whose freshness it checked. Written by the transformer role right
-- after each `dbt build` / `dbt source freshness` from run_results.json and
-- sources.json; read by the analyst role.

create table if not exists ops.dbt_runs (
    invocation_id     text        primary key,
    command           text        not null,
    target_name       text,
    started_at        timestamptz not null,
    finished_at       timestamptz not null,
    elapsed_seconds   double precision not null,
    return_code       integer     not null,
    success           boolean     not null,
    nodes_total       integer     not null default 0,
    nodes_error       integer     not null default 0,
    tests_passed      integer     not null default 0,
    tests_failed      integer     not null default 0,
    tests_warned      integer     not null default 0,
    selector          text,
    is_full_refresh   boolean     not null default false,
    recorded_at       timestamptz not null default clock_timestamp()
);
create index if not exists dbt_runs_started_at_idx on ops.dbt_runs (started_at);

create table if not exists ops.dbt_node_results (
    invocation_id     text        not null references ops.dbt_runs (invocation_id) on delete cascade,
    unique_id         text        not null,
    resource_type     text        not null,
    node_name         text        not null,
    status            text        not null,
    rows_affected     bigint,
    failures          bigint,
    execution_seconds double precision,
    started_at        timestamptz,
    completed_at      timestamptz,
    message           text,
    relation_name     text,
    primary key (invocation_id, unique_id)
);
create index if not exists dbt_node_results_status_idx on ops.dbt_node_results (status)
    where status not in ('success', 'pass');

create table if not exists ops.source_freshness (
    invocation_id         text        not null,
    unique_id             text        not null,
    source_name           text        not null,
    table_name            text        not null,
    status                text        not null,
    max_loaded_at         timestamptz,
    snapshotted_at        timestamptz not null,
    age_seconds           double precision,
    warn_after_seconds    double precision,
    error_after_seconds   double precision,
    error_message         text,
    recorded_at           timestamptz not null default clock_timestamp(),
    primary key (invocation_id, unique_id)
);
create index if not exists source_freshness_snapshotted_at_idx
    on ops.source_freshness (snapshotted_at);

grant select, insert, update, delete on ops.dbt_runs, ops.dbt_node_results, ops.source_freshness
    to smart_access_transformer;
grant select on ops.dbt_runs, ops.dbt_node_results, ops.source_freshness
    to smart_access_analyst;
