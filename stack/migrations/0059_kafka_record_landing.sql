-- Where records of one topic landed, by their Kafka coordinates: for the :8090
-- inspector, which reads as the analyst and may not read raw. It answers only the
-- place (raw table, or dead letter with its kind) and the sink's stored position of
-- each partition (whatever its group: only the sink stores positions), never a row's data. Each lookup is a probe of the coordinates'
-- unique index, so a page of 500 records costs the same at any table size.

create or replace function ops.kafka_record_landing(
    p_topic text, p_partitions integer[], p_offsets bigint[]
)
returns table (
    kafka_partition integer,
    kafka_offset bigint,
    landed_in text,
    error_kind text,
    redriven_to text,
    sink_next_offset bigint
)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    with wanted as (
        select distinct w.kafka_partition, w.kafka_offset
        from unnest(p_partitions, p_offsets) as w (kafka_partition, kafka_offset)
        limit 5000
    ),
    found as (
        select w.kafka_partition, w.kafka_offset, 'raw.access_events' as landed_in,
               null::text as error_kind, null::text as redriven_to, r.kafka_log_epoch
        from wanted as w
        join raw.access_events as r
          on r.kafka_topic = p_topic and r.kafka_partition = w.kafka_partition
         and r.kafka_offset = w.kafka_offset
        union all
        select w.kafka_partition, w.kafka_offset, 'raw.device_health', null, null,
               r.kafka_log_epoch
        from wanted as w
        join raw.device_health as r
          on r.kafka_topic = p_topic and r.kafka_partition = w.kafka_partition
         and r.kafka_offset = w.kafka_offset
        union all
        select w.kafka_partition, w.kafka_offset, 'raw.device_registry', null, null,
               r.kafka_log_epoch
        from wanted as w
        join raw.device_registry as r
          on r.kafka_topic = p_topic and r.kafka_partition = w.kafka_partition
         and r.kafka_offset = w.kafka_offset
        union all
        select w.kafka_partition, w.kafka_offset, 'raw.dead_letters', r.error_kind,
               r.redriven_to, r.kafka_log_epoch
        from wanted as w
        join raw.dead_letters as r
          on r.kafka_topic = p_topic and r.kafka_partition = w.kafka_partition
         and r.kafka_offset = w.kafka_offset
    ),
    -- a partition's log may have been recreated (a new log epoch): the newest wins,
    -- and a dead letter that was redriven reports the raw table it went to
    newest as (
        select distinct on (f.kafka_partition, f.kafka_offset) f.*
        from found as f
        order by f.kafka_partition, f.kafka_offset, f.kafka_log_epoch desc,
                 (f.landed_in = 'raw.dead_letters')
    )
    select w.kafka_partition, w.kafka_offset, n.landed_in, n.error_kind, n.redriven_to,
           (select max(o.next_offset) from ops.consumer_offsets as o
            where o.topic = p_topic and o.partition = w.kafka_partition)
    from wanted as w
    left join newest as n
      on n.kafka_partition = w.kafka_partition and n.kafka_offset = w.kafka_offset
    order by 1, 2
$$;

revoke all on function ops.kafka_record_landing(text, integer[], bigint[]) from public;
grant execute on function ops.kafka_record_landing(text, integer[], bigint[])
    to smart_access_analyst, smart_access_transformer;
