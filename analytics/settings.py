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
    "PROMETHEUS_GRAPHS",
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
# The Pipeline health page links each to a graph in that Prometheus (an e2e test runs
# every expression against the stack's Prometheus).
PROMETHEUS_GRAPHS = (
    ("consumer lag", "sum by (topic) (smart_access_consumer_lag_records)"),
    ("rows landed per second", "sum by (topic) (rate(smart_access_records_landed_total[5m]))"),
    ("dead letters per second", "sum by (kind) (rate(smart_access_dead_letters_total[5m]))"),
    (
        "end-to-end latency p99",
        "histogram_quantile(0.99, rate(smart_access_end_to_end_latency_seconds_bucket[5m]))",
    ),
    ("consumer restarts", "changes(process_start_time_seconds{job='consumer'}[1h])"),
    ("raw freshness (s)", "time() - smart_access_ingest_last_batch_timestamp_seconds"),
    (
        "Kafka messages in per second",
        "sum by (topic) (rate(kafka_server_brokertopicmetrics_messagesin_total{topic!=''}[5m]))",
    ),
    (
        "DAG run duration (s)",
        "airflow_dagrun_duration_success_sum / airflow_dagrun_duration_success_count",
    ),
    ("PostgreSQL connections", "sum by (datname) (pg_stat_database_numbackends)"),
    (
        "disk free",
        "node_filesystem_avail_bytes{fstype!~'tmpfs|ramfs'}"
        " / node_filesystem_size_bytes{fstype!~'tmpfs|ramfs'}",
    ),
)


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
