"""Migrations, roles and constraints against a real PostgreSQL."""

from __future__ import annotations

import time

import psycopg2
import psycopg2.errors
import pytest

from stack.ephemeral import EphemeralPostgres
from stack.migrate import apply_migrations, migration_files

LANDING_TABLES = ["access_events", "device_health", "device_registry", "dead_letters"]


def _insert_event(cur, offset: int) -> None:
    cur.execute(
        """
        insert into raw.access_events (kafka_topic, kafka_partition, kafka_offset,
            schema_version, event_id, device_id, household_id, event_ts, event_type,
            trigger_source)
        values ('smart-access.events', 0, %s, 1, gen_random_uuid(), 'dev-1', 'hh-1',
            now(), 'open', 'app')
        """,
        (offset,),
    )


def test_migrations_apply_twice_cleanly(pg: EphemeralPostgres) -> None:
    # The fixture applied them once; a second and third run change nothing.
    assert apply_migrations(pg.dsn(), pg.role_passwords) == []
    assert apply_migrations(pg.dsn(), pg.role_passwords) == []
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("select name from ops.schema_migrations order by version")
        assert [r[0] for r in cur.fetchall()] == [f.name for f in migration_files()]


def test_contract_schemas_and_tables_exist(pg_conn) -> None:
    with pg_conn.cursor() as cur:
        cur.execute("select nspname from pg_namespace")
        schemas = {r[0] for r in cur.fetchall()}
        assert {"raw", "ops", "staging", "intermediate", "marts", "snapshots"} <= schemas
        cur.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in ('raw', 'ops')"
        )
        tables = {r[0] for r in cur.fetchall()}
    expected = {f"raw.{t}" for t in LANDING_TABLES} | {"ops.consumer_offsets", "ops.ingest_batches"}
    assert expected <= tables


@pytest.mark.parametrize("table", LANDING_TABLES)
def test_every_landing_table_has_coordinates_and_ingested_at(pg_conn, table: str) -> None:
    with pg_conn.cursor() as cur:
        cur.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'raw' and table_name = %s",
            (table,),
        )
        columns = {r[0] for r in cur.fetchall()}
        assert {"kafka_topic", "kafka_partition", "kafka_offset", "_ingested_at"} <= columns
        cur.execute(
            """
            select pg_get_indexdef(i.indexrelid) from pg_index i
            where i.indrelid = %s::regclass and i.indisunique
            """,
            (f"raw.{table}",),
        )
        unique = [r[0] for r in cur.fetchall()]
    # a record's coordinates are unique within its log epoch (see migration 0040)
    assert any("(kafka_topic, kafka_partition, kafka_offset, kafka_log_epoch)" in d for d in unique)
    assert "kafka_log_epoch" in columns


def test_unique_constraint_rejects_duplicate_coordinates(pg_conn) -> None:
    with pg_conn.cursor() as cur:
        _insert_event(cur, 10_000)
        with pytest.raises(psycopg2.errors.UniqueViolation):
            _insert_event(cur, 10_000)


def _seed_landed_events(cur, rows: int, topic: str = "schema-test.events") -> None:
    """`rows` events landed one a second up to now, in landing order (as the consumer does).

    On a topic of their own: the session's server holds other tests' rows.
    """
    cur.execute(
        """
        insert into raw.access_events (kafka_topic, kafka_partition, kafka_offset,
            schema_version, event_id, device_id, household_id, event_ts, event_type,
            trigger_source, _ingested_at)
        select %s, 0, n, 1, gen_random_uuid(), 'dev-' || n %% 50, 'hh-1',
            now() - (%s - n) * interval '1 second', 'open', 'app',
            now() - (%s - n) * interval '1 second'
        from generate_series(1, %s) as n
        """,
        (topic, rows, rows, rows),
    )
    cur.execute("analyze raw.access_events")


def test_ingested_since_uses_an_index(pg_conn) -> None:
    with pg_conn.cursor() as cur:
        _seed_landed_events(cur, 50_000)
        # An hour of the seeded landing, half a day ago: other tests' rows landed
        # minutes ago, so only the seeded pages' ranges match.
        cur.execute(
            "explain select count(*) from raw.access_events "
            "where _ingested_at > now() - interval '13 hours'"
            " and _ingested_at <= now() - interval '12 hours'"
        )
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert "access_events_ingested_at_brin" in plan, plan


def test_a_build_reads_only_the_summarised_ranges_of_its_window(pg, pg_conn) -> None:
    """Unsummarised BRIN ranges match every window: the build summarises them first."""
    with pg_conn.cursor() as cur:
        # committed, so the transformer sees it: a topic no other test seeds
        _seed_landed_events(cur, 50_000, topic="schema-test.summarised")
        cur.execute("select pg_relation_size('raw.access_events') / 8192")
        table_pages = cur.fetchone()[0]
    # BRIN summaries only ever widen: a range keeps the values of rows other tests
    # deleted, and the seeded rows may land in the space those deletes freed. Start
    # from no summaries at all (raw is append-only in production), so what a range
    # claims is what its rows hold once the build has summarised it.
    with pg_conn.cursor() as cur:
        cur.execute(
            "select count(*) from (select brin_desummarize_range("
            "'raw.access_events_ingested_at_brin', r * 32) from generate_series(0, %s) as r) d",
            (table_pages // 32 + 1,),
        )
    pg_conn.commit()
    # An autovacuum of raw.access_events (50 k rows just landed) holds the lock the
    # summariser skips an index under (by design: a build never waits on VACUUM, it
    # reads more instead): wait it out, and try again if one started in between.

    def vacuum_running() -> bool:
        with pg_conn.cursor() as cur:
            cur.execute(
                "select count(*) from pg_stat_progress_vacuum"
                " where relid = 'raw.access_events'::regclass"
            )
            busy = cur.fetchone()[0] > 0
        pg_conn.commit()
        return busy

    def heap_blocks(node: dict) -> int:
        own = node.get("Lossy Heap Blocks", 0) + node.get("Exact Heap Blocks", 0)
        return own + sum(heap_blocks(child) for child in node.get("Plans", []))

    # What a summarised index reads, from the heap itself: every range whose rows' own
    # min and max overlap the window. Other tests' rows share the table (and the free
    # space their deletes left), so where the seeded rows land is not ours to choose;
    # an unsummarised range, though, matches every window and is read on top of these.
    window = (
        "_ingested_at > now() - interval '13 hours' and _ingested_at <= now() - interval '12 hours'"
    )
    predicted_sql = """
        with ranges as (
            select (ctid::text::point)[0]::bigint / 32 as range_no,
                   min(_ingested_at) as lo, max(_ingested_at) as hi
            from raw.access_events group by 1
        )
        select count(*) * 32 from ranges
        where lo <= now() - interval '12 hours' and hi > now() - interval '13 hours'
    """  # 32: the index's pages_per_range (migration 0002)
    read = predicted = table_pages
    for _attempt in range(5):
        deadline = time.monotonic() + 120
        while vacuum_running() and time.monotonic() < deadline:
            time.sleep(0.5)
        transformer = psycopg2.connect(pg.dsn(user="smart_access_transformer"))
        try:
            with transformer, transformer.cursor() as cur:
                # what dbt's on-run-start calls: the transformer does not own raw
                cur.execute("select ops.summarize_raw_brin_ranges()")
                assert cur.fetchone()[0] >= 0
                cur.execute(
                    "explain (analyze, format json) select count(*) from raw.access_events"
                    f" where {window}"
                )
                read = heap_blocks(cur.fetchone()[0][0]["Plan"])
                cur.execute(predicted_sql)
                predicted = cur.fetchone()[0]
                cur.execute("select ops.summarize_raw_brin_ranges()")
                again = cur.fetchone()[0]
        finally:
            transformer.close()
        if 0 < read <= predicted:
            assert again == 0  # nothing landed since: nothing left to do
            break
        time.sleep(2)
    assert 0 < read <= predicted < table_pages, (read, predicted, table_pages)


def test_a_warehouse_built_before_gets_the_door_sessions_stamp_index(pg_conn) -> None:
    migration = next(f for f in migration_files() if f.name.startswith("0055_"))
    with pg_conn.cursor() as cur:  # rolled back by the fixture
        cur.execute("select to_regclass('intermediate.int_door_sessions')")
        assert cur.fetchone()[0] is None  # the session's database has no dbt build
        cur.execute(
            "create table intermediate.int_door_sessions (opened_at timestamptz,"
            " transformed_at timestamptz)"
        )
        cur.execute("create index on intermediate.int_door_sessions using brin (transformed_at)")
        cur.execute(migration.read_text())
        cur.execute(
            """
            select methods.amname, pg_get_indexdef(indexes.indexrelid)
            from pg_index as indexes
            join pg_class as index_class on index_class.oid = indexes.indexrelid
            join pg_am as methods on methods.oid = index_class.relam
            where indexes.indrelid = 'intermediate.int_door_sessions'::regclass
            """
        )
        indexes = cur.fetchall()
    assert [kind for kind, _ in indexes] == ["btree"], indexes
    assert "(transformed_at)" in indexes[0][1]


@pytest.mark.parametrize("role", ["smart_access_transformer", "smart_access_analyst"])
def test_the_warehouse_roles_plan_without_jit(pg, role) -> None:
    conn = psycopg2.connect(pg.dsn(user=role))
    try:
        with conn.cursor() as cur:
            cur.execute("show jit")
            assert cur.fetchone()[0] == "off"
    finally:
        conn.close()


def test_the_dedupe_probe_is_answered_by_the_index_alone(pg_conn) -> None:
    """Staging's "an earlier-landed copy within the horizon?" is one index condition."""
    with pg_conn.cursor() as cur:
        _seed_landed_events(cur, 50_000)
        cur.execute(
            """
            explain select 1 from raw.access_events as source
            left join lateral (
                select 1 as found from raw.access_events as earlier
                where earlier.event_ts = source.event_ts
                  and earlier.event_id = source.event_id
                  and earlier._ingested_at >= source._ingested_at - interval '7 days'
                  and (earlier._ingested_at, earlier.kafka_topic, earlier.kafka_partition,
                       earlier.kafka_offset)
                    < (source._ingested_at, source.kafka_topic, source.kafka_partition,
                       source.kafka_offset)
                limit 1
            ) as earlier_copy on true
            where source._ingested_at > now() - interval '10 minutes'
              and earlier_copy.found is null
            """
        )
        plan = [r[0] for r in cur.fetchall()]
    probe = next(i for i, line in enumerate(plan) if "earlier" in line and "Scan" in line)
    assert "access_events_event_ts_id_landed_idx" in plan[probe], plan
    # every condition of the probe is an index condition: no row is fetched to compare
    conditions = [line.strip().split(":")[0] for line in plan[probe + 1 : probe + 3]]
    assert "Index Cond" in conditions and "Filter" not in conditions, plan


def test_analyst_cannot_write(pg: EphemeralPostgres) -> None:
    conn = psycopg2.connect(pg.dsn(user="smart_access_analyst"))
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from ops.ingest_batches")
            assert cur.fetchone()[0] >= 0
        conn.rollback()
        with (
            conn.cursor() as cur,
            pytest.raises(
                (psycopg2.errors.ReadOnlySqlTransaction, psycopg2.errors.InsufficientPrivilege)
            ),
        ):
            cur.execute(
                "insert into ops.consumer_offsets (consumer_group, topic, partition, next_offset)"
                " values ('x', 'y', 0, 0)"
            )
        conn.rollback()
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("select * from raw.access_events")
    finally:
        conn.close()


def test_loader_lands_rows_but_cannot_drop_or_alter(pg: EphemeralPostgres) -> None:
    conn = psycopg2.connect(pg.dsn(user="smart_access_loader"))
    try:
        with conn.cursor() as cur:
            _insert_event(cur, 20_000)
            cur.execute(
                "insert into ops.consumer_offsets (consumer_group, topic, partition, next_offset)"
                " values ('g', 'smart-access.events', 0, 20001)"
            )
        conn.rollback()
        for statement in (
            "drop table raw.access_events",
            "alter table raw.access_events add column x int",
            "truncate raw.access_events",
            "delete from raw.access_events",
            "create table raw.sneaky (x int)",
        ):
            with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(statement)
            conn.rollback()
    finally:
        conn.close()


def test_transformer_reads_raw_and_builds_marts(pg: EphemeralPostgres) -> None:
    conn = psycopg2.connect(pg.dsn(user="smart_access_transformer"))
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from raw.access_events")
            cur.execute("create table marts.probe_model as select 1 as one")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(
                    "insert into raw.access_events (kafka_topic, kafka_partition, kafka_offset,"
                    " schema_version, event_id, device_id, household_id, event_ts, event_type,"
                    " trigger_source) values ('t', 0, 1, 1, gen_random_uuid(), 'd', 'h', now(),"
                    " 'open', 'app')"
                )
        conn.rollback()
    finally:
        conn.close()


def test_analyst_reads_what_the_transformer_builds(pg: EphemeralPostgres) -> None:
    with psycopg2.connect(pg.dsn(user="smart_access_transformer")) as conn, conn.cursor() as cur:
        cur.execute("drop table if exists marts.probe_shared")
        cur.execute("create table marts.probe_shared as select 42 as answer")
    with psycopg2.connect(pg.dsn(user="smart_access_analyst")) as conn, conn.cursor() as cur:
        cur.execute("select answer from marts.probe_shared")
        assert cur.fetchone() == (42,)


def test_wrong_password_is_refused(pg: EphemeralPostgres) -> None:
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(pg.dsn(user="smart_access_analyst", password="wrong"))
