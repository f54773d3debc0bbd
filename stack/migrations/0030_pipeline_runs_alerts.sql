-- What the Airflow pipeline records about itself, for operators and the dashboard.
--   ops.pipeline_runs            one row per DAG run: interval, gate, dbt outcome, duration
--   ops.pipeline_consumer_lag    the ingestion gate's lag per topic partition, per run
--   ops.pipeline_raw_freshness   the ingestion gate's raw-table freshness, per run
--   ops.pipeline_alerts          warnings of the gate and failures of tasks
-- Rows are keyed by (dag_id, run_id) so a retried or cleared task rewrites its own
-- rows instead of adding new ones. Airflow tasks connect as smart_access_transformer.

create table if not exists ops.pipeline_runs (
    dag_id                      text        not null,
    run_id                      text        not null,
    data_interval_start         timestamptz,
    data_interval_end           timestamptz,
    state                       text        not null default 'running'
        check (state in ('running', 'success', 'failed')),
    started_at                  timestamptz not null default clock_timestamp(),
    finished_at                 timestamptz,
    duration_seconds            double precision,
    gate_status                 text check (gate_status in ('ok', 'warn', 'fail')),
    consumer_lag_total          bigint,
    consumer_lag_max_partition  bigint,
    raw_freshness_seconds       double precision,
    raw_rows_in_interval        bigint,
    source_freshness_status     text,
    rows_per_mart               jsonb       not null default '{}'::jsonb,
    model_results               jsonb       not null default '{}'::jsonb,
    models_succeeded            integer,
    models_failed               integer,
    tests_passed                integer,
    tests_failed                integer,
    failed_nodes                text[]      not null default '{}',
    transform_seconds           double precision,
    failed_task                 text,
    error                       text,
    updated_at                  timestamptz not null default clock_timestamp(),
    primary key (dag_id, run_id)
);
create index if not exists pipeline_runs_started_at_idx on ops.pipeline_runs (started_at desc);

create table if not exists ops.pipeline_consumer_lag (
    dag_id            text        not null,
    run_id            text        not null,
    consumer_group    text        not null,
    topic             text        not null,
    partition         integer     not null,
    committed_offset  bigint,
    end_offset        bigint      not null,
    lag               bigint      not null check (lag >= 0),
    measured_at       timestamptz not null default clock_timestamp(),
    primary key (dag_id, run_id, consumer_group, topic, partition)
);

create table if not exists ops.pipeline_raw_freshness (
    dag_id            text        not null,
    run_id            text        not null,
    table_name        text        not null,
    last_ingested_at  timestamptz,
    age_seconds       double precision,
    rows_in_interval  bigint      not null,
    is_gated          boolean     not null,
    measured_at       timestamptz not null default clock_timestamp(),
    primary key (dag_id, run_id, table_name)
);

create table if not exists ops.pipeline_alerts (
    alert_id        bigint generated always as identity primary key,
    created_at      timestamptz not null default clock_timestamp(),
    severity        text        not null check (severity in ('warning', 'error')),
    dag_id          text        not null,
    run_id          text,
    task_id         text,
    try_number      integer,
    summary         text        not null,
    detail          text,
    log_url         text,
    webhook_status  text
);
create index if not exists pipeline_alerts_created_at_idx on ops.pipeline_alerts (created_at desc);

grant select, insert, update, delete on
    ops.pipeline_runs, ops.pipeline_consumer_lag, ops.pipeline_raw_freshness, ops.pipeline_alerts
    to smart_access_transformer;
grant select on
    ops.pipeline_runs, ops.pipeline_consumer_lag, ops.pipeline_raw_freshness, ops.pipeline_alerts
    to smart_access_analyst;
