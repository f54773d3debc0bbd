"""Numbered SQL migrations: applied in order, once each, under an advisory lock.

`ops.schema_migrations` records every applied file with a checksum; a file edited
after it was applied is refused, so a migration is changed by adding a new one.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import psycopg2

from stack.config import StackError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x5A_ACCE55  # any constant shared by every runner


def migration_files() -> list[Path]:
    files = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    versions = [f.name[:4] for f in files]
    if len(set(versions)) != len(versions):
        raise StackError(f"two migrations share a number in {MIGRATIONS_DIR}")
    return files


def apply_migrations(dsn: str, role_passwords: dict[str, str] | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied now (empty when up to date)."""
    conn = psycopg2.connect(dsn)
    applied_now: list[str] = []
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
            cur.execute("create schema if not exists ops")
            cur.execute(
                """
                    create table if not exists ops.schema_migrations (
                        version     text primary key,
                        name        text not null,
                        checksum    text not null,
                        applied_at  timestamptz not null default now()
                    )
                    """
            )
            cur.execute("select version, checksum from ops.schema_migrations")
            done = dict(cur.fetchall())
        for path in migration_files():
            version, sql = path.name[:4], path.read_text()
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if version in done:
                if done[version] != checksum:
                    raise StackError(
                        f"migration {path.name} changed after it was applied; "
                        "add a new numbered migration instead of editing it"
                    )
                continue
            with conn, conn.cursor() as cur:
                cur.execute(sql)
                cur.execute(
                    "insert into ops.schema_migrations (version, name, checksum) "
                    "values (%s, %s, %s)",
                    (version, path.name, checksum),
                )
            applied_now.append(path.name)
            logger.info("applied migration %s", path.name)
        if role_passwords:
            with conn, conn.cursor() as cur:
                for role, password in role_passwords.items():
                    cur.execute(
                        f'alter role "{role}" password %s',
                        (password,),
                    )
    finally:
        try:
            with conn.cursor() as cur:
                cur.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
            conn.commit()
        finally:
            conn.close()
    return applied_now
