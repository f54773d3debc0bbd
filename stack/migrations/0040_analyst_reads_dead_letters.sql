-- The dashboard's pipeline page and the Kafka inspector show why records were
-- rejected: the read-only analyst may read the dead letters (and no other raw table).
grant usage on schema raw to smart_access_analyst;
grant select on raw.dead_letters to smart_access_analyst;
