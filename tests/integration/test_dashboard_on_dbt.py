"""The dashboard on marts built by the real dbt project (not seeded ones).

A day of a small fleet goes into raw.* (tests/dbt_ledger.py), `dbt build` turns it
into marts, and then every query of analytics/queries.py runs as the analyst and
every page renders without error and without the "no marts" guidance: the
dashboard and the dbt models agree on relation and column names.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
import sqlalchemy as sa

from analytics import queries as q
from analytics.ui import NO_MARTS
from benchmarks.dashboard import PAGES, analyst_engine
from stack.ephemeral import EphemeralPostgres
from tests.apptest_support import DASHBOARD, metrics, open_page, texts
from tests.dbt_ledger import Ledger, build_fleet
from tests.integration.dbt_support import build, dbt_env, fresh_database

DATABASE = "dashboard_on_dbt"


@pytest.fixture(scope="module")
def warehouse(pg: EphemeralPostgres, tmp_path_factory: pytest.TempPathFactory) -> str:
    database = fresh_database(pg, DATABASE)
    now = datetime.now(UTC).replace(microsecond=0)
    ledger = Ledger(seed=6)
    fleet = build_fleet(ledger, now - timedelta(days=2), count=12)
    for device in fleet:
        ledger.door_activity(device, now - timedelta(hours=26), now - timedelta(minutes=1))
        ledger.health_reports(device, now - timedelta(hours=3), now - timedelta(minutes=1))
    conn = psycopg2.connect(pg.dsn(database))
    try:
        ledger.flush(conn)
        with conn, conn.cursor() as cur:
            cur.execute(
                "insert into raw.dead_letters (kafka_topic, kafka_partition, kafka_offset, "
                "kafka_key, payload, error_kind, error_detail) values "
                "('smart-access.events', 0, 99, 'dev-0001', '{', 'invalid_json', 'truncated')"
            )
    finally:
        conn.close()
    build(dbt_env(pg, database), tmp_path_factory.mktemp("dbt") / "target", now.isoformat())
    return database


@pytest.fixture
def analyst_env(
    pg: EphemeralPostgres, warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    for key, value in pg.env(user="smart_access_analyst").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PGDATABASE", warehouse)
    yield


def test_every_page_query_runs_on_the_dbt_marts(pg: EphemeralPostgres, warehouse: str) -> None:
    engine = analyst_engine(pg, warehouse)
    ran = set()
    try:
        with engine.connect() as conn:
            for page, entries in PAGES.items():
                for query, params in entries:
                    rows = conn.execute(sa.text(query.sql), params).fetchall()
                    ran.add(query.name)
                    assert rows is not None, (page, query.name)
            events = conn.execute(sa.text("select count(*) from marts.fct_access_events"))
            assert events.scalar_one() > 0
    finally:
        engine.dispose()
    every = {v.name for v in vars(q).values() if isinstance(v, q.Query)}
    assert ran == every, f"queries no page benchmark covers: {every - ran}"


@pytest.mark.parametrize(
    "page",
    [f"views/{n}.py" for n in ("overview", "activity", "devices", "device", "alerts", "pipeline")],
)
def test_every_page_renders_the_dbt_marts(page: str, analyst_env: None) -> None:
    at = open_page(DASHBOARD, page)
    assert NO_MARTS not in texts(at)
    assert not at.error, [e.value for e in at.error]
    assert at.metric or at.dataframe


def test_overview_agrees_with_the_dbt_marts(pg: EphemeralPostgres, analyst_env: None) -> None:
    with psycopg2.connect(pg.dsn(DATABASE)) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from marts.fct_alerts where is_open")
        open_alerts = cur.fetchone()[0]
        cur.execute(
            "select count(*) from marts.device_status_current "
            "where device_status = 'active' and is_online"
        )
        online = cur.fetchone()[0]
    shown = metrics(open_page(DASHBOARD))
    assert shown["Open alerts"] == str(open_alerts)
    assert shown["Devices online"] == str(online)
    assert online > 0
