"""Session fixtures: a real PostgreSQL and a real Kafka broker on free ports.

They are never the user's running stack: each test session starts its own servers
in temporary folders, applies the migrations, creates the topics and tears them
down at the end. Later test modules build on `pg`, `pg_conn` and `kafka`.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg2
import pytest

from stack.ephemeral import EphemeralKafka, EphemeralPostgres


@pytest.fixture(scope="session")
def pg() -> Iterator[EphemeralPostgres]:
    server = EphemeralPostgres.create()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def kafka() -> Iterator[EphemeralKafka]:
    broker = EphemeralKafka.create()
    try:
        yield broker
    finally:
        broker.destroy()


@pytest.fixture
def pg_conn(pg: EphemeralPostgres) -> Iterator[psycopg2.extensions.connection]:
    """An admin connection; the test's changes are rolled back afterwards."""
    conn = psycopg2.connect(pg.dsn())
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()
