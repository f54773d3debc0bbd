-- Kafka offsets can be reused: a topic deleted and recreated, or a broker whose log
-- was lost, starts again at offset 0 while PostgreSQL keeps the positions and rows
-- of the old log. The consumer detects that (topic id, log start and end against the
-- stored position), stops the partition and records a halt here; accepting the new
-- log (`python -m streaming.replay --accept-new-log`) starts a new log epoch, so the
-- new log's records land beside the old ones instead of colliding with them.
-- A record's coordinates are (topic, partition, offset) within its log epoch; on a
-- platform whose topics were never recreated every epoch is 0.

alter table raw.access_events add column if not exists kafka_log_epoch smallint not null default 0;
alter table raw.device_health add column if not exists kafka_log_epoch smallint not null default 0;
alter table raw.device_registry add column if not exists kafka_log_epoch smallint not null default 0;
alter table raw.dead_letters add column if not exists kafka_log_epoch smallint not null default 0;

alter table raw.access_events
    drop constraint access_events_kafka_coordinates_key,
    add constraint access_events_kafka_coordinates_key
        unique (kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch);
alter table raw.device_health
    drop constraint device_health_kafka_coordinates_key,
    add constraint device_health_kafka_coordinates_key
        unique (kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch);
alter table raw.device_registry
    drop constraint device_registry_kafka_coordinates_key,
    add constraint device_registry_kafka_coordinates_key
        unique (kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch);
alter table raw.dead_letters
    drop constraint dead_letters_kafka_coordinates_key,
    add constraint dead_letters_kafka_coordinates_key
        unique (kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch);

-- The log a stored position belongs to: its epoch and the topic's id in Kafka.
alter table ops.consumer_offsets add column if not exists log_epoch smallint not null default 0;
alter table ops.consumer_offsets add column if not exists topic_id text;

create table if not exists ops.consumer_halts (
    halt_id          bigint generated always as identity primary key,
    consumer_group   text        not null,
    topic            text        not null,
    partition        integer     not null,
    reason           text        not null check (reason in (
        'topic_recreated', 'offset_beyond_log_end', 'log_start_beyond_position')),
    stored_offset    bigint      not null,
    log_start        bigint,
    log_end          bigint,
    stored_topic_id  text,
    actual_topic_id  text,
    log_epoch        smallint    not null,
    detected_at      timestamptz not null default clock_timestamp(),
    resolved_at      timestamptz,
    resolution       text
);
-- one open halt per partition: a consumer that restarts into it does not add more
create unique index if not exists consumer_halts_open_key
    on ops.consumer_halts (consumer_group, topic, partition) where resolved_at is null;

grant select, insert, update on ops.consumer_halts to smart_access_loader;
grant select on ops.consumer_halts to smart_access_analyst, smart_access_transformer;

-- Every start of a consumer process: restarts in a loop show on the Pipeline page.
create table if not exists ops.consumer_starts (
    consumer_id     text        not null,
    consumer_group  text        not null,
    pid             integer     not null,
    started_at      timestamptz not null default clock_timestamp(),
    primary key (consumer_id, started_at)
);
create index if not exists consumer_starts_started_at_idx on ops.consumer_starts (started_at);
grant select, insert on ops.consumer_starts to smart_access_loader;
grant select on ops.consumer_starts to smart_access_analyst, smart_access_transformer;
