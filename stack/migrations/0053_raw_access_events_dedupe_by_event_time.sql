-- raw.access_events: the dedupe index leads with the event's own time.
--
-- A resend carries the same payload, so the same event_ts: staging looks for an
-- earlier-landed copy with the same (event_ts, event_id). With event_ts first, the
-- probes of a build's new events land near the index's right edge, which stays in
-- memory however long the history, where probes keyed by a random UUID read pages
-- from all over an index that grows with every landed event. The index holds every
-- column the test compares, so a probe that finds no earlier copy reads no table
-- page. The consumer's inserts gain the same locality.

create index if not exists access_events_event_ts_id_landed_idx
    on raw.access_events (event_ts, event_id, _ingested_at, kafka_topic, kafka_partition, kafka_offset);
drop index if exists raw.access_events_event_id_idx;
