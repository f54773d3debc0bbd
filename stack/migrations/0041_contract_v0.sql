-- Contract v0: the original guide's format, which devices in the field send. It lands
-- with its original values and schema_version 0; staging maps it to v1.
--   access events: the device's own event id (not a UUID) in source_event_id and, in
--     event_id, a name-based UUID of it (uuid5 of the device id and that event id, so a
--     resent event keeps its id and the dedupe index serves both versions); no household;
--   health reports: no firmware version;
--   registry: a tombstone (null value) on the compacted topic lands as status 'removed'
--     with only the device id and the moment (the Kafka record's timestamp).
alter table raw.access_events add column if not exists source_event_id text;
alter table raw.access_events alter column household_id drop not null;

alter table raw.device_health alter column firmware_version drop not null;

alter table raw.device_registry alter column household_id drop not null;
alter table raw.device_registry alter column device_type drop not null;
alter table raw.device_registry alter column model drop not null;
alter table raw.device_registry alter column firmware_version drop not null;
alter table raw.device_registry alter column installed_at drop not null;

-- Redrive (`python -m streaming.redrive`) marks what it did with each dead letter.
alter table raw.dead_letters add column if not exists redriven_at timestamptz;
alter table raw.dead_letters add column if not exists redriven_to text;
alter table raw.dead_letters add column if not exists redrive_error_kind text;
alter table raw.dead_letters add column if not exists redrive_error_detail text;
grant update (redriven_at, redriven_to, redrive_error_kind, redrive_error_detail)
    on raw.dead_letters to smart_access_loader;
create index if not exists dead_letters_pending_redrive_idx
    on raw.dead_letters (kafka_topic, kafka_partition, kafka_offset) where redriven_at is null;
