"""Airflow assets of the platform: the raw tables the consumer lands and the marts
`build_models` writes. The pipeline DAG reads raw (inlets of its gate) and updates
every mart (outlets of `build_models`, each asset event carrying the rows the build
wrote and its watermark); DAGs scheduled on a mart (the alert notifications on
`marts.fct_alerts`) run after each build that succeeded. The Airflow UI's asset graph
shows raw -> pipeline -> marts -> notifications.

URIs follow the Postgres provider's form, postgres://host:port/database/schema/table,
with the logical host `warehouse`: the same assets whichever PostgreSQL runs them.
"""

from __future__ import annotations

from airflow.sdk import Asset

__all__ = ["FCT_ALERTS", "MARTS", "MART_ASSETS", "RAW_ASSETS", "RAW_TABLES", "asset_for"]

RAW_TABLES = ("access_events", "device_health", "device_registry", "dead_letters")
MARTS = (
    "fct_access_events",
    "fct_alerts",
    "fct_device_health_hourly",
    "agg_access_15min",
    "agg_access_fleet_15min",
    "agg_access_hourly",
    "agg_access_daily",
    "device_status_current",
    "dim_device",
    "dim_household",
)


def asset_for(schema: str, table: str) -> Asset:
    return Asset(
        name=f"{schema}.{table}",
        uri=f"postgres://warehouse:5432/smart_access/{schema}/{table}",
        group=schema,
    )


RAW_ASSETS = {table: asset_for("raw", table) for table in RAW_TABLES}
MART_ASSETS = {mart: asset_for("marts", mart) for mart in MARTS}
FCT_ALERTS = MART_ASSETS["fct_alerts"]
