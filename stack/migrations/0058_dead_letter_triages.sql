-- Triage of a burst of dead letters (DAG smart_access_dead_letter_triage, started by
-- the watcher on smart-access.dlq): what arrived, by kind and producer key, samples
-- with their verdict under today's contracts, and the redrive command to run once the
-- contract is fixed. One row per triage run.

create table if not exists ops.dead_letter_triages (
    dag_run_id      text        primary key,
    detected_at     timestamptz not null,
    since           timestamptz not null,
    until           timestamptz not null,
    dead_letters    bigint      not null,
    by_kind         jsonb       not null,
    by_key          jsonb       not null,
    samples         jsonb       not null,
    redrive_command text        not null,
    webhook_status  text,
    created_at      timestamptz not null default clock_timestamp()
);

create index if not exists dead_letter_triages_created_at_idx
    on ops.dead_letter_triages (created_at);

grant select, insert, update on ops.dead_letter_triages to smart_access_transformer;
grant select on ops.dead_letter_triages to smart_access_analyst;
