"""A failed build resumed with `dbt retry`, on a real PostgreSQL with real dbt.

The pipeline passes its DAG run id as the resume key: when some nodes of a build fail
(here: a raw event with an event type no contract knows fails the accepted-values
tests, so every model downstream of them is skipped), clearing the task after the fix
(the row deleted) runs only those nodes, with the failed build's window and stamp,
then moves the watermarks; the marts equal the independent recomputation as if one
build had run.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import psycopg2
import pytest

from stack.ephemeral import EphemeralPostgres
from tests.dbt_ledger import build_fleet, utc
from tests.dbt_truth import Truth
from tests.integration.dbt_support import build, ledger_warehouse
from tests.integration.test_dbt_truth import _assert_matches

from smart_access.dbt import RESUME_STATE, run_dbt_build  # isort: skip

T0 = utc(2026, 5, 4, 8, 0, 0)
HOUR = T0 + timedelta(hours=1)
NEXT = HOUR + timedelta(minutes=15)


def _bad_event(dsn: str, add: bool) -> None:
    """Land (or, as the fix, delete) one raw event of type 'teleport'."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        if not add:
            cur.execute("delete from raw.access_events where event_type = 'teleport'")
            return
        cur.execute(
            """
            create temp table bad as
                select * from raw.access_events order by _ingested_at desc limit 1;
            update bad set event_id = gen_random_uuid(), kafka_offset = kafka_offset + 1000000,
                event_type = 'teleport', _ingested_at = clock_timestamp();
            insert into raw.access_events select * from bad;
            """
        )


def _stamp(conn) -> object:
    with conn, conn.cursor() as cur:
        cur.execute("select max(build_transformed_at) from ops.transform_watermarks")
        return cur.fetchone()[0]


@pytest.fixture(scope="module")
def warehouse(pg: EphemeralPostgres, tmp_path_factory):
    with ledger_warehouse(pg, tmp_path_factory, "dbt_resume", seed=41) as wh:
        ledger = wh["ledger"]
        fleet = build_fleet(ledger, T0 - timedelta(minutes=1), count=10)
        for device in fleet:
            ledger.door_activity(device, T0, HOUR)
            ledger.health_reports(device, T0, HOUR)
        for minute in (20, 25, 30):
            ledger.report(fleet[0], T0 + timedelta(minutes=minute, seconds=40), battery=9)
        ledger.flush(wh["conn"])
        build(wh["env"], wh["target"], (HOUR + timedelta(minutes=5)).isoformat())
        for device in fleet:  # the next interval lands
            ledger.door_activity(device, HOUR, NEXT)
            ledger.health_reports(device, HOUR, NEXT)
        ledger.flush(wh["conn"])
        yield wh


def test_a_cleared_build_resumes_only_what_failed(warehouse, caplog) -> None:
    env, target, conn, ledger = (warehouse[k] for k in ("env", "target", "conn", "ledger"))
    reference = (NEXT + timedelta(minutes=5)).isoformat()
    before = _stamp(conn)
    _bad_event(warehouse["dsn"], add=True)
    caplog.set_level(logging.INFO, logger="smart_access.dbt")
    failed = run_dbt_build(
        vars={"reference_at": reference}, env=env, target_path=target, resume_key="run-7"
    )
    # as a process: dbt's own result lines at INFO as they come
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dbt: ")]
    assert any(re.match(r"dbt: \d+ of \d+ (OK|PASS|FAIL) ", m) for m in lines), lines[:5]
    assert not failed.success
    failing = [n for n in failed.nodes if n.status == "fail"]
    assert failing and all(n.resource_type == "test" for n in failing), failed.failed_nodes
    assert failed.skipped_nodes, failed.failed_nodes
    _bad_event(warehouse["dsn"], add=False)  # the operator's fix
    assert _stamp(conn) == before  # the failed build moved no watermark
    assert (target / RESUME_STATE).exists()
    total = len(failed.nodes)

    caplog.clear()
    caplog.set_level(logging.INFO, logger="smart_access.dbt")
    # in process, as the Airflow task runs it (dbtRunner; the failed build was a process)
    resumed = run_dbt_build(
        vars={"reference_at": reference},
        env=env,
        target_path=target,
        resume_key="run-7",
        in_process=True,
    )
    # every node is logged at INFO as dbt finishes it (its NodeFinished event)
    finished = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dbt: ")]
    assert any(re.match(r"dbt: model \w+: success in ", m) for m in finished), finished[:5]
    assert any(re.match(r"dbt: test \w+: pass in ", m) for m in finished), finished[:5]
    assert "resuming the failed build" in caplog.text
    assert resumed.success, [f"{n.name}: {n.message}" for n in resumed.nodes if n.status == "error"]
    ran = {n.name for n in resumed.nodes if n.resource_type != "operation"}  # not the hooks
    # only what failed or was skipped ran again, nothing that had succeeded
    assert ran == set(failed.failed_nodes) | set(failed.skipped_nodes), ran
    assert len(ran) < total
    assert not (target / RESUME_STATE).exists()
    assert _stamp(conn) is not None and _stamp(conn) > before  # moved once, now
    with conn, conn.cursor() as cur:
        at = NEXT + timedelta(minutes=5)
        _assert_matches(cur, Truth(ledger.events, ledger.health, ledger.registry, at))


def test_another_key_or_a_build_in_between_builds_normally(warehouse) -> None:
    env, target = warehouse["env"], warehouse["target"]
    reference = (NEXT + timedelta(minutes=6)).isoformat()
    _bad_event(warehouse["dsn"], add=True)
    failed = run_dbt_build(
        vars={"reference_at": reference}, env=env, target_path=target, resume_key="run-8"
    )
    _bad_event(warehouse["dsn"], add=False)
    assert not failed.success and (target / RESUME_STATE).exists()
    # a build of another run in between (make transform) moves the watermarks...
    build(env, target, reference)
    # ...so run-8's old window is stale: its retry is a normal, whole build
    again = run_dbt_build(
        vars={"reference_at": reference}, env=env, target_path=target, resume_key="run-8"
    )
    assert again.success and len(again.nodes) >= len(failed.nodes)
    assert not (target / RESUME_STATE).exists()
