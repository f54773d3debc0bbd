"""Shared by the dbt integration tests: a database of their own and a dbt runner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2

from stack.ephemeral import EphemeralPostgres
from stack.migrate import apply_migrations
from tests.dbt_ledger import Ledger

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

from smart_access.dbt import DbtBuildResult, run_dbt_build  # noqa: E402

TRANSFORMER = "smart_access_transformer"


def fresh_database(pg: EphemeralPostgres, name: str) -> str:
    """A new database on the session's server with the migrations applied.

    Other tests land rows in `smart_access`; truth reconciliation needs raw tables
    that hold exactly what this module inserted.
    """
    conn = psycopg2.connect(pg.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')
        cur.execute(f'create database "{name}"')
    conn.close()
    apply_migrations(pg.dsn(name), pg.role_passwords)
    return name


@contextmanager
def ledger_warehouse(
    pg: EphemeralPostgres, tmp_path_factory: Any, name: str, seed: int
) -> Iterator[dict[str, Any]]:
    """A fresh database `name`, dbt's environment and target folder for it, an admin
    connection (closed afterwards) and a ledger seeded with `seed`."""
    database = fresh_database(pg, name)
    conn = psycopg2.connect(pg.dsn(database))
    try:
        yield {
            "env": dbt_env(pg, database),
            "target": tmp_path_factory.mktemp(name) / "target",
            "conn": conn,
            "ledger": Ledger(seed=seed),
            "dsn": pg.dsn(database),
        }
    finally:
        conn.close()


def dbt_env(pg: EphemeralPostgres, database: str) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.update(pg.env(user=TRANSFORMER))
    env.update(
        {
            "PGDATABASE": database,
            "DBT_USER": TRANSFORMER,
            "DBT_PASSWORD": pg.role_passwords[TRANSFORMER],
            "DBT_TARGET": "test",
        }
    )
    return env


def build(env: dict[str, str], target_path: Path, reference_at: str, **kwargs) -> DbtBuildResult:
    result = run_dbt_build(
        vars={"reference_at": reference_at}, env=env, target_path=target_path, **kwargs
    )
    failed = [
        f"{n.name}: {n.status} {n.message}" for n in result.nodes if n.status in ("error", "fail")
    ]
    assert result.success, "dbt build failed:\n" + "\n".join(failed)
    return result
