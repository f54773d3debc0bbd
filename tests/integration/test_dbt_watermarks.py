"""Commit-safe watermarks, the transform lock and the data-watermark reference time.

Real PostgreSQL, real dbt. One ledger lands in steps:
1. an hour of stream, built from scratch;
2. a slow loader batch opens (rows stamped by the database clock, not committed),
   a fast batch commits after it, and a build runs in between: it must not move the
   watermark past the open batch, so neither batch is read yet;
3. the slow batch commits and the next build reads both: the marts equal the
   independent recomputation - nothing of the slow batch is lost;
4. the stream goes on with a consumer lag of 20 minutes and a build runs without a
   pinned reference time: the rules are evaluated at the data watermark, so the
   open door whose close has not landed yet and the devices whose latest reports
   are still in Kafka raise no alert.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg2
import pytest

from stack.ephemeral import EphemeralPostgres
from tests.dbt_ledger import Ledger, build_fleet, utc
from tests.dbt_truth import Truth
from tests.integration.dbt_support import build, dbt_env, fresh_database
from tests.integration.test_dbt_truth import _assert_matches

from smart_access.dbt import DbtError, dbt_connection_params, run_dbt_build  # isort: skip
from smart_access.watermarks import transform_lock  # isort: skip

T0 = utc(2026, 4, 6, 8, 0, 0)
HOUR = T0 + timedelta(hours=1)
LAG_NOW = T0 + timedelta(hours=2)  # "now" of the lagging consumer: it has landed 20 min less


@pytest.fixture(scope="module")
def warehouse(pg: EphemeralPostgres, tmp_path_factory):
    database = fresh_database(pg, "dbt_watermarks")
    env = dbt_env(pg, database)
    target = tmp_path_factory.mktemp("dbt-watermarks") / "target"
    conn = psycopg2.connect(pg.dsn(database))
    loader_dsn = pg.dsn(database, user="smart_access_loader")
    ledger = Ledger(seed=23)
    fleet = build_fleet(ledger, T0 - timedelta(minutes=1), count=12)
    for device in fleet:
        ledger.door_activity(device, T0, HOUR)
        ledger.health_reports(device, T0, HOUR)
    for minute in (20, 25, 30):  # a low battery: fct_alerts has rows to compare
        ledger.report(fleet[0], T0 + timedelta(minutes=minute, seconds=40), battery=9)
    ledger.flush(conn)
    build(env, target, (HOUR + timedelta(minutes=5)).isoformat())
    try:
        yield {"env": env, "target": target, "conn": conn, "ledger": ledger,
               "fleet": fleet, "loader_dsn": loader_dsn}  # fmt: skip
    finally:
        conn.close()


def _watermark(cur, table: str):
    cur.execute(
        "select ingested_through, safe_before from ops.transform_watermarks"
        " where source_table = %s",
        (table,),
    )
    return cur.fetchone()


@pytest.fixture(scope="module")
def overlapped(warehouse):
    """A build runs while a slow loader batch is open and a later batch has committed."""
    ledger, fleet, conn = warehouse["ledger"], warehouse["fleet"], warehouse["conn"]
    end = HOUR + timedelta(minutes=15)
    slow = psycopg2.connect(warehouse["loader_dsn"])
    fast = psycopg2.connect(warehouse["loader_dsn"])
    try:
        for device in fleet[:6]:
            ledger.door_activity(device, HOUR, end)
        slow_rows = list(ledger._pending["smart-access.events"])
        ledger.flush(slow, commit=False, stamp_with_clock=True)
        for device in fleet[6:]:
            ledger.door_activity(device, HOUR, end)
        for device in fleet:
            ledger.health_reports(device, HOUR, end)
        fast_rows = list(ledger._pending["smart-access.events"])
        ledger.flush(fast, stamp_with_clock=True)
        held_back = {row["event_id"] for row in slow_rows + fast_rows}
        below = [e for e in ledger.events if e["event_id"] not in held_back]
        reference = (end + timedelta(minutes=5)).isoformat()
        build(warehouse["env"], warehouse["target"], reference)
        with conn, conn.cursor() as cur:
            during = {
                "events": _watermark(cur, "raw.access_events"),
                "health": _watermark(cur, "raw.device_health"),
            }
            cur.execute(
                "select count(*) from marts.fct_access_events where event_id::text = any(%s)",
                (sorted(held_back),),
            )
            during["held_back_in_fact"] = cur.fetchone()[0]
            truth = Truth(
                below,
                [h for h in ledger.health if h["_ingested_at"] <= during["health"][0]],
                ledger.registry,
                end + timedelta(minutes=5),
            )
            _assert_matches(cur, truth)
        slow.commit()
    finally:
        slow.close()
        fast.close()
    build(warehouse["env"], warehouse["target"], reference)
    return during, slow_rows, fast_rows, end + timedelta(minutes=5)


def test_watermark_stops_before_an_open_loader_batch(overlapped) -> None:
    during, slow_rows, fast_rows, _ = overlapped
    first_slow = min(row["_ingested_at"] for row in slow_rows)
    first_fast = min(row["_ingested_at"] for row in fast_rows)
    assert first_slow < first_fast  # the slow batch started first, the fast one committed first
    events_through, safe_before = during["events"]
    assert safe_before <= first_slow
    assert events_through < first_slow
    assert during["health"][0] < first_slow
    # Neither batch was read: the committed later one waits for the open one.
    assert during["held_back_in_fact"] == 0


def test_rows_of_a_slow_batch_are_built_once_it_commits(warehouse, overlapped) -> None:
    _, slow_rows, fast_rows, reference = overlapped
    ledger, conn = warehouse["ledger"], warehouse["conn"]
    with conn, conn.cursor() as cur:
        cur.execute(
            "select count(*) from marts.fct_access_events where event_id::text = any(%s)",
            ([row["event_id"] for row in slow_rows + fast_rows],),
        )
        assert cur.fetchone()[0] == len({row["event_id"] for row in slow_rows + fast_rows})
        _assert_matches(cur, Truth(ledger.events, ledger.health, ledger.registry, reference))
        events_through, _ = _watermark(cur, "raw.access_events")
    assert events_through == max(row["_ingested_at"] for row in slow_rows + fast_rows)


def test_a_second_build_exits_with_one_line_while_one_runs(warehouse, overlapped) -> None:
    params = dbt_connection_params(warehouse["env"])
    with transform_lock(params) as holder:
        with holder.cursor() as cur:
            cur.execute("select pg_backend_pid()")
            pid = cur.fetchone()[0]
        started = time.monotonic()
        with pytest.raises(DbtError) as raised:
            run_dbt_build(
                env=warehouse["env"], target_path=warehouse["target"], lock_wait_seconds=0.5
            )
        waited = time.monotonic() - started
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"another dbt build is running (transform lock held by pid {pid} ")
    assert 0.4 <= waited < 5  # it waited the half second, and did not start dbt


def test_a_second_builder_waits_for_the_lock(warehouse) -> None:
    params = dbt_connection_params(warehouse["env"])
    released = threading.Event()

    def hold() -> None:
        with transform_lock(params):
            time.sleep(1.0)
        released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.3)
    started = time.monotonic()
    with transform_lock(params, wait_seconds=30):
        waited = time.monotonic() - started
        assert released.wait(5)
    holder.join()
    assert 0.4 <= waited < 10


def test_consumer_lag_of_20_minutes_raises_no_false_alert(warehouse, overlapped) -> None:
    ledger, fleet, conn = warehouse["ledger"], warehouse["fleet"], warehouse["conn"]
    _, _, _, _ = overlapped
    landed_until = LAG_NOW - timedelta(minutes=20)
    start = HOUR + timedelta(minutes=15)
    door = fleet[6]
    for device in fleet:
        if device is not door:
            ledger.door_activity(device, start, landed_until)
        ledger.health_reports(device, start, landed_until, every_minutes=2)
    # Opened 21 minutes before "now"; its close two minutes later is still in Kafka.
    if door.door_open:
        ledger.event(door, landed_until - timedelta(minutes=3), "close")
    ledger.event(door, LAG_NOW - timedelta(minutes=21), "open")
    loader = psycopg2.connect(warehouse["loader_dsn"])
    try:
        ledger.flush(loader, stamp_with_clock=True)
    finally:
        loader.close()
    result = run_dbt_build(env=warehouse["env"], target_path=warehouse["target"])
    assert result.success, result.failed_nodes
    with conn, conn.cursor() as cur:
        cur.execute(
            "select min(newest_record_at) from ops.transform_partition_watermarks"
            " where source_table in ('raw.access_events', 'raw.device_health')"
        )
        watermark = cur.fetchone()[0]
        cur.execute(  # the episodes this build (re)computed
            "select distinct evaluated_at from marts.fct_alerts"
            " where transformed_at = (select max(transformed_at) from marts.fct_alerts)"
        )
        evaluated = [row[0] for row in cur.fetchall()]
        # Every mart as of the data watermark ...
        _assert_matches(cur, Truth(ledger.events, ledger.health, ledger.registry, watermark))
    assert evaluated == [watermark]
    assert landed_until - timedelta(minutes=5) <= watermark <= landed_until
    # ... where the wall clock of the lagging consumer would have raised false alerts.
    at_now = Truth(ledger.events, ledger.health, ledger.registry, LAG_NOW).alerts()
    at_watermark = Truth(ledger.events, ledger.health, ledger.registry, watermark).alerts()
    false_alerts = {(a[0], a[1]) for a in at_now - at_watermark if a[4] is None}
    assert ("door_left_open", door.device_id) in false_alerts
    assert sum(kind == "offline" for kind, _ in false_alerts) >= len(fleet) - 1


def test_the_next_build_reuses_the_parsed_project(warehouse, overlapped) -> None:
    """Each build has new stamps and a new window; none of it may force a full parse."""
    log = warehouse["target"].parent / "logs" / "dbt.log"
    first = run_dbt_build(env=warehouse["env"], target_path=warehouse["target"])
    assert first.success, first.failed_nodes
    seen = log.stat().st_size
    with warehouse["conn"], warehouse["conn"].cursor() as cur:
        cur.execute("select max(build_transformed_at) from ops.transform_watermarks")
        previous = cur.fetchone()[0]
    second = run_dbt_build(env=warehouse["env"], target_path=warehouse["target"])
    assert second.success, second.failed_nodes
    with log.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(seen)
        lines = handle.read().splitlines()
    parsing = [line for line in lines if "partial pars" in line.lower()]
    assert parsing, lines[:20]
    assert not [line for line in parsing if "unable to do partial parsing" in line.lower()], parsing
    assert second.started_at > first.finished_at
    # ... and its data tests got the previous build's stamp as a literal when compiled
    compiled = next(
        warehouse["target"].glob("compiled/**/not_null_int_door_sessions_session_id.sql")
    )
    sql = " ".join(compiled.read_text().split())
    assert f"transformed_at > cast('{previous.isoformat()}' as timestamptz)" in sql, sql


def test_a_resend_beyond_the_dedupe_horizon_keeps_the_first_copy(warehouse, overlapped) -> None:
    ledger, conn = warehouse["ledger"], warehouse["conn"]
    original = ledger.events[0]
    ledger.resend(original, original["_ingested_at"])
    loader = psycopg2.connect(warehouse["loader_dsn"])
    try:
        ledger.flush(loader, stamp_with_clock=True)  # lands now: months after the first copy
    finally:
        loader.close()
    result = run_dbt_build(
        vars={"dedupe_horizon_days": 0, "reference_at": LAG_NOW.isoformat()},
        env=warehouse["env"],
        target_path=warehouse["target"],
    )
    assert result.success, result.failed_nodes
    with conn, conn.cursor() as cur:
        cur.execute(  # staging no longer sees the first copy: the resend is staged ...
            "select count(*) from staging.stg_smart_access__access_events where event_id = %s",
            (original["event_id"],),
        )
        staged = cur.fetchone()[0]
        cur.execute(  # ... and the fact's key keeps the first copy
            "select kafka_partition, kafka_offset from marts.fct_access_events where event_id = %s",
            (original["event_id"],),
        )
        assert cur.fetchall() == [(original["kafka_partition"], original["kafka_offset"])]
    assert staged == 2  # within a zero-day horizon neither copy sees the other


# Last in the module: a selected build writes without moving the watermarks.
def test_make_transform_runs_the_unit_tests_on_request(warehouse, monkeypatch, capsys) -> None:
    from smart_access import transform

    for name in ("PGHOST", "PGPORT", "PGDATABASE", "DBT_USER", "DBT_PASSWORD", "DBT_TARGET"):
        monkeypatch.setenv(name, warehouse["env"][name])
    assert transform.main(["--select", "int_door_sessions", "--unit-tests"]) == 0
    shown = capsys.readouterr().out
    with warehouse["conn"], warehouse["conn"].cursor() as cur:
        cur.execute(
            "select count(*) from ops.dbt_node_results where resource_type = 'unit_test'"
            " and invocation_id = (select invocation_id from ops.dbt_runs"
            " order by started_at desc limit 1)"
        )
        unit_tests = cur.fetchone()[0]
    assert unit_tests >= 1 and "dbt build OK" in shown, shown
