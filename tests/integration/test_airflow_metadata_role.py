"""Airflow's metadata database belongs to its own role, on a real PostgreSQL.

A stack whose metadata the superuser created (every stack before the role existed)
is handed over on the next `make up`: the database, its schema and every object in
it change owner; other roles cannot connect; a new password takes effect.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from stack import airflow
from stack.config import AIRFLOW_DATABASE, StackConfig
from stack.ephemeral import EphemeralPostgres


@pytest.fixture
def stack_config(pg: EphemeralPostgres, tmp_path: Path) -> Iterator[StackConfig]:
    config = StackConfig.from_env(
        {
            "SMART_ACCESS_STACK_DIR": str(tmp_path / "stack"),
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg.port),
            "PGUSER": "postgres",
            "PGPASSWORD": "postgres",
        }
    )
    airflow.prepare(config, {})
    with psycopg2.connect(pg.dsn(AIRFLOW_DATABASE)) as conn, conn.cursor() as cur:
        # what a superuser-run `airflow db migrate` leaves behind, in miniature
        cur.execute(
            """
            create type public.legacy_state as enum ('queued', 'done');
            create table public.legacy_runs (id serial primary key, state public.legacy_state);
            create sequence public.legacy_free_counter;
            create view public.legacy_done as select id from public.legacy_runs
                where state = 'done';
            """
        )
    try:
        yield config
    finally:
        with psycopg2.connect(pg.dsn(AIRFLOW_DATABASE)) as conn, conn.cursor() as cur:
            cur.execute(
                "drop view if exists public.legacy_done;"
                " drop table if exists public.legacy_runs;"
                " drop sequence if exists public.legacy_free_counter;"
                " drop type if exists public.legacy_state"
            )


def _owners(pg: EphemeralPostgres) -> dict[str, str]:
    with psycopg2.connect(pg.dsn(AIRFLOW_DATABASE)) as conn, conn.cursor() as cur:
        cur.execute(
            """
            select c.relname, c.relowner::regrole::text from pg_class as c
            where c.relnamespace = 'public'::regnamespace and c.relname like 'legacy%%'
            union all
            select t.typname, t.typowner::regrole::text from pg_type as t
            where t.typnamespace = 'public'::regnamespace and t.typname = 'legacy_state'
            union all
            select 'schema public', nspowner::regrole::text from pg_namespace
            where nspname = 'public'
            union all
            select 'database', datdba::regrole::text from pg_database where datname = %s
            """,
            (AIRFLOW_DATABASE,),
        )
        return dict(cur.fetchall())


def test_the_metadata_is_handed_to_its_own_role(
    pg: EphemeralPostgres, stack_config: StackConfig
) -> None:
    before = _owners(pg)
    assert before["legacy_runs"] == "postgres" and before["database"] == "postgres"

    airflow.ensure_metadata_role(stack_config)

    owners = _owners(pg)
    expected = {
        "legacy_runs",
        "legacy_runs_pkey",
        "legacy_runs_id_seq",
        "legacy_free_counter",
        "legacy_done",
        "legacy_state",
        "schema public",
        "database",
    }
    assert set(owners) >= expected, owners
    assert {name: owners[name] for name in expected} == dict.fromkeys(
        expected, airflow.METADATA_ROLE
    )
    # The role logs in with the stack's password and is no superuser.
    password = airflow.metadata_password(stack_config)
    role_dsn = pg.dsn(AIRFLOW_DATABASE, user=airflow.METADATA_ROLE, password=password)
    with psycopg2.connect(role_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = current_user"
        )
        assert cur.fetchone() == (False, False, False)
        cur.execute("insert into public.legacy_runs (state) values ('done') returning id")
        assert cur.fetchone() is not None
    # No other platform role may even connect to it.
    with pytest.raises(psycopg2.OperationalError, match="permission denied"):
        psycopg2.connect(pg.dsn(AIRFLOW_DATABASE, user="smart_access_analyst")).close()

    # Idempotent, and a password set in the shell replaces the generated one.
    airflow.prepare(stack_config, {"AIRFLOW_METADATA_PASSWORD": "rotated-metadata-secret"})
    airflow.ensure_metadata_role(stack_config)
    assert _owners(pg) == owners
    rotated = pg.dsn(
        AIRFLOW_DATABASE, user=airflow.METADATA_ROLE, password="rotated-metadata-secret"
    )
    psycopg2.connect(rotated).close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(role_dsn).close()
