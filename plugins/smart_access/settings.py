"""The pipeline's knobs, read from the environment (see `.env.airflow`).

| variable | default | meaning |
| --- | --- | --- |
| `SMART_ACCESS_LAG_WARN_MESSAGES` | 100000 | total consumer-group lag that makes the gate warn |
| `SMART_ACCESS_LAG_FAIL_MESSAGES` | 1000000 | total lag that fails the run (~15 min at 1 k/s) |
| `SMART_ACCESS_FRESHNESS_WARN_SECONDS` | 300 | age of the newest raw row that makes the gate warn |
| `SMART_ACCESS_FRESHNESS_FAIL_SECONDS` | 1800 | age that fails the run |
| `SMART_ACCESS_ALERT_WEBHOOK_URL` | unset | POST a JSON alert here when a task fails |
| `SMART_ACCESS_DBT_PROJECT_DIR` | `<repo>/dbt_project` | the dbt project the DAG builds |
| `SMART_ACCESS_POSTGRES_CONN_ID` | `smart_access_postgres` | Airflow connection to the warehouse |
| `SMART_ACCESS_KAFKA_CONN_ID` | `smart_access_kafka` | Airflow connection to Kafka |
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["REPO_ROOT", "PipelineSettings"]

REPO_ROOT = Path(__file__).resolve().parents[2]


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMART_ACCESS_", extra="ignore")

    lag_warn_messages: int = Field(default=100_000, ge=0)
    lag_fail_messages: int = Field(default=1_000_000, ge=0)
    freshness_warn_seconds: float = Field(default=300, ge=0)
    freshness_fail_seconds: float = Field(default=1800, ge=0)
    alert_webhook_url: AnyHttpUrl | None = None
    dbt_project_dir: Path = REPO_ROOT / "dbt_project"
    postgres_conn_id: str = "smart_access_postgres"
    kafka_conn_id: str = "smart_access_kafka"

    @model_validator(mode="after")
    def _warn_below_fail(self) -> PipelineSettings:
        if self.lag_warn_messages > self.lag_fail_messages:
            raise ValueError("SMART_ACCESS_LAG_WARN_MESSAGES must not exceed ..._FAIL_MESSAGES")
        if self.freshness_warn_seconds > self.freshness_fail_seconds:
            raise ValueError("SMART_ACCESS_FRESHNESS_WARN_SECONDS must not exceed ..._FAIL_SECONDS")
        return self
