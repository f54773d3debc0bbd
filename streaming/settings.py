"""Typed settings for the Python services, read from the environment.

PostgreSQL uses libpq's own variables (PGHOST, PGPORT, PGUSER, PGPASSWORD,
PGDATABASE); Kafka uses KAFKA_BOOTSTRAP_SERVERS plus optional security settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["KafkaSettings", "PostgresSettings", "settings_error"]


def settings_error(exc: Exception) -> str:
    """A settings ValidationError in one line: each problem's message, joined."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return " ".join(str(exc).split())
    parts = []
    for error in errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where and "=" not in message else message)
    return "; ".join(parts)


class PostgresSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PG", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    user: str = "postgres"
    password: SecretStr | None = None
    database: str = "smart_access"
    connect_timeout: int = 5

    def dsn(self) -> str:
        """A libpq keyword DSN; the password is included only when set."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "dbname": self.database,
            "connect_timeout": str(self.connect_timeout),
            "application_name": "smart-access",
        }
        if self.password is not None:
            parts["password"] = self.password.get_secret_value()
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())

    def sqlalchemy_url(self) -> str:
        from sqlalchemy.engine import URL

        return URL.create(
            "postgresql+psycopg2",
            username=self.user,
            password=self.password.get_secret_value() if self.password else None,
            host=self.host,
            port=self.port,
            database=self.database,
        ).render_as_string(hide_password=False)


def _quote(value: str) -> str:
    if value and not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    # the variable a user fixes when the login is refused (the stack sets each
    # service's KAFKA_SASL_PASSWORD from KAFKA_<ROLE>_PASSWORD and names it here)
    credential_variable: str = "KAFKA_SASL_PASSWORD"

    @field_validator("ssl_ca_location")
    @classmethod
    def _ca_exists(cls, value: str | None) -> str | None:
        if value and not Path(value).is_file():
            raise ValueError(
                f"KAFKA_SSL_CA_LOCATION={value}: no such file; point it at the cluster's CA "
                "certificate (the embedded stack writes .stack/kafka/tls/ca.crt)"
            )
        return value

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_USERNAME "
                "and KAFKA_SASL_PASSWORD"
            )
        return self

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by every client of the platform."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config
