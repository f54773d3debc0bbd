"""The plan guard: no page query's cost grows with history (tests/plan_guard.py).

Two warehouses are built by the real dbt project from the same fleet at the same
rate, one with 35 days of history and one with 105. Every query of every page in
`benchmarks.dashboard.PAGES` (the dashboard's and the inspector's, with the
parameters the pages send) runs under EXPLAIN ANALYZE as the analyst in both. It
fails when a plan reads a table that grows with history by sequential scan (no index
serves it), or when it reads more rows of such a table from the longer history. To
put a new page query under the guard, add it to its page in PAGES; a test there
fails while any query of analytics/queries.py is missing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

from benchmarks.dashboard import PAGES, analyst_engine
from stack.ephemeral import EphemeralPostgres
from tests.plan_guard import (
    HISTORY_DAYS,
    growing_tables,
    partition_parents,
    plan_reads,
    reads_grow,
    seed_history,
    table_rows,
)


@pytest.fixture(scope="module")
def histories(pg: EphemeralPostgres, tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    with ThreadPoolExecutor(len(HISTORY_DAYS)) as pool:
        futures = {
            days: pool.submit(
                seed_history,
                pg,
                f"plan_guard_{days}d",
                days,
                tmp_path_factory.mktemp(f"plan_guard_{days}d") / "target",
            )
            for days in HISTORY_DAYS
        }
        return {days: future.result() for days, future in futures.items()}


def _reads(pg: EphemeralPostgres, database: str) -> dict[tuple[str, str], dict]:
    engine = analyst_engine(pg, database)
    out = {}
    try:
        with engine.connect() as conn:
            parents = partition_parents(conn)
        for page, entries in PAGES.items():
            for query, params in entries:
                with engine.begin() as conn:
                    out[(page, query.name)] = plan_reads(conn, query.sql, params, parents)
    finally:
        engine.dispose()
    return out


def test_no_page_query_reads_more_with_longer_history(
    pg: EphemeralPostgres, histories: dict[int, str]
) -> None:
    short, long = HISTORY_DAYS
    counts = {}
    for days, database in histories.items():
        with psycopg2.connect(pg.dsn(database)) as conn:
            counts[days] = table_rows(conn)
    growing = growing_tables(counts[short], counts[long])
    # the seeds do what the guard needs: history-bound tables of every kind grow
    assert {
        "marts.fct_access_events",
        "marts.agg_access_15min",
        "marts.agg_access_fleet_15min",
        "marts.agg_access_hourly",
        "marts.fct_alerts",
        "marts.fct_device_health_hourly",
        "ops.ingest_batches",
        "ops.pipeline_runs",
        "ops.dbt_node_results",
        "raw.dead_letters",
    } <= growing, sorted(growing)
    reads = {days: _reads(pg, database) for days, database in histories.items()}
    problems = []
    for key, by_table in reads[long].items():
        for table, read in sorted(by_table.items()):
            if table not in growing:
                continue
            before = reads[short][key].get(table)
            rows_before = before.rows if before else 0
            if read.sequential:
                problems.append(f"{key[0]} / {key[1]}: sequential scan of {table}")
            elif reads_grow(rows_before, read.rows):
                problems.append(
                    f"{key[0]} / {key[1]}: reads {rows_before} rows of {table} with"
                    f" {short} days of history and {read.rows} with {long}"
                )
    assert not problems, "page queries whose cost grows with history:\n" + "\n".join(problems)
