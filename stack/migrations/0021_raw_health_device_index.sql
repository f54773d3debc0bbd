-- Health reports by device and time: staging's dedupe (same device_id and
-- reported_at) and the incremental health marts look rows up this way.
create index if not exists device_health_device_reported_idx
    on raw.device_health (device_id, reported_at);
