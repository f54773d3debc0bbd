-- raw.access_events: the dedupe index answers staging's "is there an earlier-landed
-- copy of this event?" by itself.
--
-- Staging keeps an event's first landed copy: for each new row it looks for a row
-- with the same event_id landed earlier (smaller (_ingested_at, Kafka coordinates))
-- within the dedupe horizon. With those columns in the index after event_id, the
-- whole test is an index condition: a probe that finds nothing (almost every row)
-- reads no table page, where the event_id-only index fetched the row itself from
-- the heap to compare.

create index if not exists access_events_event_id_landed_idx
    on raw.access_events (event_id, _ingested_at, kafka_topic, kafka_partition, kafka_offset);
drop index if exists raw.access_events_event_id_idx;
