"""How the embedded stack wires its exporters (no process is started here)."""

from __future__ import annotations

from pathlib import Path

import yaml

from stack import airflow, kafka, prometheus
from stack.config import StackConfig
from stack.services import services


def config(tmp_path: Path, **extra: str) -> StackConfig:
    return StackConfig.from_env({"SMART_ACCESS_STACK_DIR": str(tmp_path), **extra})


def test_every_exporter_listens_on_loopback_and_prometheus_scrapes_it(tmp_path: Path) -> None:
    cfg = config(tmp_path, NODE_EXPORTER_PORT="19100", AIRFLOW_STATSD_PORT="19125")
    airflow.prepare(cfg, {})
    entries = {s.name: s for s in services(cfg)}
    for name in ("postgres-exporter", "node-exporter", "statsd-exporter"):
        flags = [p for p in entries[name].command if "listen" in p.split("=", 1)[0]]
        assert flags, name
        # every listener flag names 127.0.0.1 or is empty (the statsd TCP listener: off)
        assert all("127.0.0.1" in f or f.endswith("=") for f in flags), flags
    assert "--statsd.listen-udp=127.0.0.1:19125" in entries["statsd-exporter"].command
    agent = [p for p in entries["kafka"].command if p.startswith("-javaagent:")]
    assert agent == [f"-javaagent:{kafka.JMX_AGENT}=127.0.0.1:9404:{kafka.JMX_CONFIG}"]
    assert entries["kafka"].command.index(agent[0]) < entries["kafka"].command.index("kafka.Kafka")
    # the exporter reads the monitor role's credentials, never the superuser's
    dsn = entries["postgres-exporter"].env["DATA_SOURCE_NAME"]
    assert "user=smart_access_monitor " in dsn and "user=postgres" not in dsn

    scraped = yaml.safe_load(prometheus.render_config(cfg))
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in scraped["scrape_configs"]
    }
    assert jobs["node"] == ["127.0.0.1:19100"]
    assert set(jobs) == {
        "prometheus",
        "consumer",
        "simulator",
        "kafka",
        "postgres",
        "node",
        "airflow",
    }
    # Airflow sends StatsD to the exporter, with tags as labels
    env = airflow.airflow_env(cfg, {})
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True"
    assert env["AIRFLOW__METRICS__STATSD_PORT"] == "19125"
    assert env["AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED"] == "True"


def test_without_prometheus_there_is_no_exporter_and_no_agent(tmp_path: Path) -> None:
    cfg = config(tmp_path, SMART_ACCESS_PROMETHEUS="off")
    airflow.prepare(cfg, {})
    entries = {s.name: s for s in services(cfg)}
    assert not {"prometheus", "postgres-exporter", "node-exporter", "statsd-exporter"} & set(
        entries
    )
    assert not any(p.startswith("-javaagent:") for p in entries["kafka"].command)
    assert "AIRFLOW__METRICS__STATSD_ON" not in airflow.airflow_env(cfg, {})


def test_with_your_own_kafka_there_is_no_broker_job(tmp_path: Path) -> None:
    cfg = config(tmp_path, KAFKA_BOOTSTRAP_SERVERS="broker:9092", SMART_ACCESS_AIRFLOW="off")
    scraped = yaml.safe_load(prometheus.render_config(cfg))
    names = {job["job_name"] for job in scraped["scrape_configs"]}
    assert "kafka" not in names and "airflow" not in names and "postgres" in names
