-- Landing tables (append-only) and the consumer's bookkeeping.
-- Every landed row carries its Kafka coordinates; the database enforces that a
-- record lands once. BRIN on _ingested_at keeps "rows ingested since X" cheap at
-- tens of millions of append-only rows for almost no write cost.

create table if not exists raw.access_events (
    kafka_topic       text        not null,
    kafka_partition   integer     not null,
    kafka_offset      bigint      not null,
    kafka_timestamp   timestamptz,
    kafka_key         text,
    schema_version    smallint    not null,
    event_id          uuid        not null,
    device_id         text        not null,
    household_id      text        not null,
    event_ts          timestamptz not null,
    event_type        text        not null,
    trigger_source    text        not null,
    user_id           text,
    failure_reason    text,
    _ingested_at      timestamptz not null default clock_timestamp(),
    constraint access_events_kafka_coordinates_key
        unique (kafka_topic, kafka_partition, kafka_offset)
);
create index if not exists access_events_ingested_at_brin
    on raw.access_events using brin (_ingested_at) with (pages_per_range = 32);
create index if not exists access_events_event_id_idx on raw.access_events (event_id);

create table if not exists raw.device_health (
    kafka_topic          text        not null,
    kafka_partition      integer     not null,
    kafka_offset         bigint      not null,
    kafka_timestamp      timestamptz,
    kafka_key            text,
    schema_version       smallint    not null,
    device_id            text        not null,
    reported_at          timestamptz not null,
    battery_pct          smallint    not null,
    signal_strength_dbm  smallint    not null,
    is_online            boolean     not null,
    firmware_version     text        not null,
    temperature_c        double precision,
    _ingested_at         timestamptz not null default clock_timestamp(),
    constraint device_health_kafka_coordinates_key
        unique (kafka_topic, kafka_partition, kafka_offset)
);
create index if not exists device_health_ingested_at_brin
    on raw.device_health using brin (_ingested_at) with (pages_per_range = 32);

create table if not exists raw.device_registry (
    kafka_topic       text        not null,
    kafka_partition   integer     not null,
    kafka_offset      bigint      not null,
    kafka_timestamp   timestamptz,
    kafka_key         text,
    schema_version    smallint    not null,
    device_id         text        not null,
    household_id      text        not null,
    device_type       text        not null,
    model             text        not null,
    firmware_version  text        not null,
    installed_at      timestamptz not null,
    status            text        not null,
    updated_at        timestamptz not null,
    _ingested_at      timestamptz not null default clock_timestamp(),
    constraint device_registry_kafka_coordinates_key
        unique (kafka_topic, kafka_partition, kafka_offset)
);
create index if not exists device_registry_ingested_at_brin
    on raw.device_registry using brin (_ingested_at) with (pages_per_range = 32);

create table if not exists raw.dead_letters (
    kafka_topic       text        not null,
    kafka_partition   integer     not null,
    kafka_offset      bigint      not null,
    kafka_timestamp   timestamptz,
    kafka_key         bytea,
    payload           bytea,
    error_kind        text        not null,
    error_detail      text        not null,
    _ingested_at      timestamptz not null default clock_timestamp(),
    constraint dead_letters_kafka_coordinates_key
        unique (kafka_topic, kafka_partition, kafka_offset)
);
create index if not exists dead_letters_ingested_at_brin
    on raw.dead_letters using brin (_ingested_at) with (pages_per_range = 32);

-- The consumer's source of truth for positions: written in the same transaction
-- as the rows it describes.
create table if not exists ops.consumer_offsets (
    consumer_group   text        not null,
    topic            text        not null,
    partition        integer     not null,
    next_offset      bigint      not null check (next_offset >= 0),
    updated_at       timestamptz not null default clock_timestamp(),
    primary key (consumer_group, topic, partition)
);

create table if not exists ops.ingest_batches (
    batch_id           bigint generated always as identity primary key,
    consumer_group     text        not null,
    consumer_id        text        not null,
    started_at         timestamptz not null,
    committed_at       timestamptz not null default clock_timestamp(),
    duration_ms        double precision not null,
    events_valid       integer     not null default 0,
    events_invalid     integer     not null default 0,
    health_valid       integer     not null default 0,
    health_invalid     integer     not null default 0,
    devices_valid      integer     not null default 0,
    devices_invalid    integer     not null default 0,
    bytes              bigint      not null default 0,
    min_event_at       timestamptz,
    max_event_at       timestamptz,
    latency_p50_ms     double precision,
    latency_max_ms     double precision,
    consumer_lag       bigint
);
create index if not exists ingest_batches_committed_at_idx on ops.ingest_batches (committed_at);

grant select, insert on all tables in schema raw to smart_access_loader;
grant select, insert, update on ops.consumer_offsets, ops.ingest_batches to smart_access_loader;
grant select on all tables in schema raw to smart_access_transformer;
grant select on ops.consumer_offsets, ops.ingest_batches to smart_access_analyst;
grant select on ops.consumer_offsets, ops.ingest_batches to smart_access_transformer;
