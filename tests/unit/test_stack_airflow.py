"""How the embedded stack configures Airflow (no process is started here)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from supervisor.datatypes import dict_of_key_value_pairs

from stack import airflow
from stack.config import StackConfig, StackError
from stack.services import services, supervisord_conf


def config(tmp_path: Path, **extra: str) -> StackConfig:
    return StackConfig.from_env(
        {"SMART_ACCESS_STACK_DIR": str(tmp_path), "PGPORT": "6543", "KAFKA_PORT": "9192", **extra}
    )


def test_env_file_holds_local_defaults_for_login_and_executor() -> None:
    values = airflow.read_env_file()
    assert values["_AIRFLOW_WWW_USER_USERNAME"] == "airflow"
    assert values["_AIRFLOW_WWW_USER_PASSWORD"] == "airflow"
    assert values["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert values["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert values["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "True"
    assert "LOCAL-DEVELOPMENT DEFAULTS" in airflow.ENV_FILE.read_text()


def test_env_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("# comment\n\nA=1\nB='two words'\nC=\"x=y\"\n")
    assert airflow.read_env_file(path) == {"A": "1", "B": "two words", "C": "x=y"}
    path.write_text("NOT A PAIR\n")
    with pytest.raises(StackError, match="line 1"):
        airflow.read_env_file(path)


def test_shell_wins_over_env_file_for_the_login() -> None:
    assert airflow.credentials({}) == ("airflow", "airflow")
    assert airflow.credentials({"_AIRFLOW_WWW_USER_PASSWORD": "s3cret"}) == ("airflow", "s3cret")
    assert airflow.viewer_credentials({}) == ("viewer", "viewer")
    assert [(x["username"], x["role"]) for x in airflow.logins({})] == [
        ("airflow", "Admin"),
        ("viewer", "Viewer"),
    ]
    with pytest.raises(StackError, match="_AIRFLOW_VIEWER_USERNAME are both 'airflow'"):
        airflow.logins({"_AIRFLOW_VIEWER_USERNAME": "airflow"})


def test_airflow_environment(tmp_path: Path) -> None:
    cfg = config(tmp_path, AIRFLOW_PORT="18080")
    airflow.prepare(cfg, {})
    env = airflow.airflow_env(cfg, {"SMART_ACCESS_LAG_FAIL_MESSAGES": "7"})
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "4"
    metadata = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    # Airflow's metadata connects as its own role with a generated password, never
    # as the superuser; the password file is the owner's only.
    assert (metadata.username, metadata.hostname, metadata.port, metadata.path) == (
        "smart_access_airflow",
        "127.0.0.1",
        6543,
        "/airflow",
    )
    assert len(unquote(metadata.password or "")) >= 32
    assert os.stat(cfg.airflow_home / "metadata-password").st_mode & 0o777 == 0o600
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    # the FAB auth manager: logins live in the metadata database (make up creates them)
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".FabAuthManager")
    assert not any(k.startswith(("_AIRFLOW", "AIRFLOW__CORE__SIMPLE_AUTH")) for k in env)
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 40
    assert env["AIRFLOW_CONN_SMART_ACCESS_POSTGRES"] == (
        "postgresql://smart_access_transformer:transformer@127.0.0.1:6543/smart_access"
    )
    kafka = json.loads(env["AIRFLOW_CONN_SMART_ACCESS_KAFKA"])
    assert kafka == {"conn_type": "kafka", "extra": {"bootstrap.servers": "127.0.0.1:9192"}}
    assert env["PGUSER"] == "smart_access_transformer"
    assert env["SMART_ACCESS_LAG_FAIL_MESSAGES"] == "7"
    # Secrets are generated once per stack and kept.
    airflow.prepare(cfg, {})
    assert (
        airflow.airflow_env(cfg, {})["AIRFLOW__API_AUTH__JWT_SECRET"]
        == (env["AIRFLOW__API_AUTH__JWT_SECRET"])
    )


def test_four_airflow_services_survive_supervisord_quoting(tmp_path: Path) -> None:
    cfg = config(tmp_path, AIRFLOW_PORT="18080", PGHOST="db", KAFKA_BOOTSTRAP_SERVERS="k:9092")
    airflow.prepare(cfg, {})
    entries = services(cfg)
    names = [s.name for s in entries]
    assert names == [
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "consumer",
        "simulator",
        "dashboard",
        "kafka-ui",
        "prometheus",
        "alertmanager",
        "postgres-exporter",
        "node-exporter",
        "statsd-exporter",
    ]
    assert entries[0].port == 18080 and entries[0].command[-1] == "api-server"
    conf = supervisord_conf(cfg, entries)
    section = conf.split("[program:airflow-scheduler]")[1].split("[program:")[0]
    line = next(x for x in section.splitlines() if x.startswith("environment="))
    parsed = dict_of_key_value_pairs(line.removeprefix("environment=").replace("%%", "%"))
    assert (
        parsed["AIRFLOW_CONN_SMART_ACCESS_KAFKA"]
        == entries[1].env["AIRFLOW_CONN_SMART_ACCESS_KAFKA"]
    )
    assert (
        parsed["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == entries[1].env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )


def test_airflow_can_be_left_out(tmp_path: Path) -> None:
    cfg = config(tmp_path, SMART_ACCESS_AIRFLOW="off", PGHOST="db", KAFKA_BOOTSTRAP_SERVERS="k:1")
    assert [s.name for s in services(cfg)] == [
        "consumer",
        "simulator",
        "dashboard",
        "kafka-ui",
        "prometheus",
        "alertmanager",
        "postgres-exporter",
        "node-exporter",
    ]  # no StatsD exporter without Airflow
    with pytest.raises(StackError, match="SMART_ACCESS_AIRFLOW"):
        config(tmp_path, SMART_ACCESS_AIRFLOW="maybe")
    with pytest.raises(StackError, match="AIRFLOW_PORT"):
        config(tmp_path, AIRFLOW_PORT="http")


def test_head_revision_matches_the_installed_airflow() -> None:
    from airflow.utils.db import _REVISION_HEADS_MAP

    assert airflow.head_revision() == list(_REVISION_HEADS_MAP.values())[-1]
