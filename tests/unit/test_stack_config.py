"""Stack configuration, generated supervisord config and migration files, no services."""

from __future__ import annotations

import configparser
import re

import pytest

from stack.config import StackConfig, StackError
from stack.kafka import server_properties
from stack.migrate import migration_files
from stack.services import Service, supervisord_conf


def test_defaults_are_the_contract_ports(tmp_path) -> None:
    config = StackConfig.from_env({"SMART_ACCESS_STACK_DIR": str(tmp_path)})
    assert (config.pg_port, config.kafka_port, config.kafka_controller_port) == (5432, 9092, 9093)
    assert not config.pg_external and not config.kafka_external
    assert config.kafka_bootstrap == "127.0.0.1:9092"


def test_pghost_and_bootstrap_mean_bring_your_own(tmp_path) -> None:
    config = StackConfig.from_env(
        {"PGHOST": "db.internal", "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"}
    )
    assert config.pg_external and config.kafka_external
    assert config.kafka_bootstrap == "k1:9092,k2:9092"
    assert "host=db.internal" in config.admin_dsn()


@pytest.mark.parametrize(("name", "value"), [("PGPORT", "abc"), ("KAFKA_PORT", "70000")])
def test_bad_port_is_one_clear_line(name: str, value: str) -> None:
    with pytest.raises(StackError, match=f"^{name}=") as info:
        StackConfig.from_env({name: value})
    assert "\n" not in str(info.value)


def test_supervisord_conf_parses_and_escapes_percent(tmp_path) -> None:
    config = StackConfig.from_env({"SMART_ACCESS_STACK_DIR": str(tmp_path)})
    conf = supervisord_conf(
        config,
        [
            Service("kafka", ["java", "-cp", "libs/*", "kafka.Kafka"], "Kafka", 9092, "infra"),
            Service("consumer", ["python", "-m", "x", "--fmt=%s"], "Consumer", env={"A": "50%"}),
        ],
    )
    parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation())
    parser.read_string(conf)
    assert parser.get("program:consumer", "command").endswith("--fmt=%s")
    assert parser.get("program:kafka", "autostart") == "true"
    assert parser.get("program:consumer", "autostart") == "false"
    assert 'A="50%"' in parser.get("program:consumer", "environment")


def test_kafka_properties_single_node_kraft(tmp_path) -> None:
    props = dict(
        line.split("=", 1)
        for line in server_properties(tmp_path, 19092, 19093).splitlines()
        if line and not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"].startswith("PLAINTEXT://127.0.0.1:19092")
    assert props["offsets.topic.replication.factor"] == "1"


def test_migrations_are_numbered_without_gaps_in_order() -> None:
    names = [f.name for f in migration_files()]
    assert names == sorted(names)
    assert all(re.match(r"^\d{4}_[a-z0-9_]+\.sql$", n) for n in names)
    assert len(names) >= 2


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    """One random id in 64 starts with '-', which the storage tool reads as a flag."""
    from stack.kafka import new_cluster_id

    ids = [new_cluster_id() for _ in range(5000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)


def _simulator_rate(config: StackConfig) -> str:
    from stack.services import services

    simulator = next(entry for entry in services(config) if entry.name == "simulator")
    return simulator.command[simulator.command.index("--rate") + 1]


def test_simulator_rate_is_a_switch_with_a_gentle_default(tmp_path) -> None:
    base = {"SMART_ACCESS_STACK_DIR": str(tmp_path)}
    assert _simulator_rate(StackConfig.from_env(base)) == "50"
    assert _simulator_rate(StackConfig.from_env({**base, "SIMULATOR_RATE": "2000"})) == "2000"
    for bad in ("0", "fast", "-5"):
        with pytest.raises(StackError, match=r"^SIMULATOR_RATE=") as info:
            StackConfig.from_env({**base, "SIMULATOR_RATE": bad})
        assert "\n" not in str(info.value)
