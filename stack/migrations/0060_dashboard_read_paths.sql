-- Index ranges for the dashboard's queries whose cost grew with history (the plan
-- guard, tests/integration/test_dashboard_plans.py, found each one):
--   raw freshness: the newest event of any batch that landed events, without
--     reading every batch;
--   source freshness: the latest snapshot of each table, one index probe a table;
--   partition lag: the latest lag measurement, without reading every DAG run's.
-- fct_alerts' own indexes (started_at, ended_at, alert_type + severity) and the
-- windowed events' window_start_at index (agg_access_fleet_15min rebuilds touched
-- windows by it) are declared by the models; dbt creates a model's indexes only with
-- its table, so a warehouse built before this gets them here.

create index if not exists ingest_batches_newest_event_idx
    on ops.ingest_batches (max_event_at) where events_valid > 0;
create index if not exists source_freshness_table_snapshot_idx
    on ops.source_freshness (table_name, snapshotted_at);
create index if not exists pipeline_consumer_lag_measured_at_idx
    on ops.pipeline_consumer_lag (measured_at);

do $alerts$
begin
    if to_regclass('marts.fct_alerts') is null then
        return;  -- not built yet: dbt creates it with these indexes
    end if;
    execute 'create index if not exists fct_alerts_started_at_idx'
        ' on marts.fct_alerts (started_at)';
    execute 'create index if not exists fct_alerts_ended_at_idx on marts.fct_alerts (ended_at)';
    execute 'create index if not exists fct_alerts_type_severity_idx'
        ' on marts.fct_alerts (alert_type, severity)';
end;
$alerts$;

do $windows$
begin
    if to_regclass('intermediate.int_access_events_windowed') is not null then
        execute 'create index if not exists int_access_events_windowed_window_idx'
            ' on intermediate.int_access_events_windowed (window_start_at)';
    end if;
end;
$windows$;
