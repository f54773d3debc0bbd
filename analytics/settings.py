"""Where the dashboard and the inspector read from, taken from the environment.

PostgreSQL comes from libpq's PG* variables; without PGUSER the apps connect as the
read-only `smart_access_analyst` role (local default password `analyst`). Kafka
comes from KAFKA_BOOTSTRAP_SERVERS and its optional security settings.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import SecretStr

from streaming.settings import KafkaSettings, PostgresSettings

__all__ = [
    "ANALYST_ROLE",
    "PROMETHEUS_URL",
    "QUERY_TTL_SECONDS",
    "REFRESH_SECONDS",
    "kafka_config",
    "postgres_settings",
    "sql_url",
]

ANALYST_ROLE = "smart_access_analyst"
_ANALYST_DEFAULT_PASSWORD = "analyst"  # noqa: S105 - documented local-development default


def _seconds(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


# Cached query results live this long; pages re-query on their refresh tick.
QUERY_TTL_SECONDS = _seconds("DASHBOARD_CACHE_TTL_SECONDS", 30)
REFRESH_SECONDS = _seconds("DASHBOARD_REFRESH_SECONDS", 60)
KAFKA_REFRESH_SECONDS = _seconds("KAFKA_UI_REFRESH_SECONDS", 15)
# The stack's Prometheus, for links to the consumer's graphs.
PROMETHEUS_URL = os.environ.get(
    "PROMETHEUS_URL", f"http://127.0.0.1:{os.environ.get('PROMETHEUS_PORT', '9090')}"
).rstrip("/")


def postgres_settings() -> PostgresSettings:
    settings = PostgresSettings()
    if "PGUSER" not in os.environ:
        settings.user = ANALYST_ROLE
        if settings.password is None:
            settings.password = SecretStr(
                os.environ.get("SMART_ACCESS_ANALYST_PASSWORD", _ANALYST_DEFAULT_PASSWORD)
            )
    return settings


def sql_url() -> str:
    return postgres_settings().sqlalchemy_url()


def kafka_config() -> dict[str, Any]:
    return KafkaSettings().client_config()
