"""The Kafka profiles of the embedded stack (KAFKA_BROKERS, KAFKA_AUTH) without a broker:
node configs, ports, TLS material, profile switches, client settings per principal."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from stack import airflow, kafka, prometheus
from stack.config import StackConfig, StackError, load_env_file
from stack.services import services, supervisord_conf
from streaming import principals
from streaming.clients import consumer_config, producer_config, refusal
from streaming.settings import KafkaSettings


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")


def config(tmp_path: Path, **env: str) -> StackConfig:
    return StackConfig.from_env({"SMART_ACCESS_STACK_DIR": str(tmp_path / "stack"), **env})


def test_the_default_is_one_plaintext_node_with_single_replicas() -> None:
    node = props(kafka.server_properties(Path("/d"), 9092, 9093))
    assert node["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert node["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert node["offsets.topic.replication.factor"] == "1"
    assert "authorizer.class.name" not in node and "sasl.enabled.mechanisms" not in node


def test_three_nodes_form_one_quorum_with_three_replicas_and_two_in_sync(tmp_path: Path) -> None:
    nodes = kafka.cluster_nodes(tmp_path, 3, 9092, 9093)
    assert [(n.port, n.controller_port) for n in nodes] == [
        (9092, 9093),
        (9192, 9193),
        (9292, 9293),
    ]
    assert len({n.directory for n in nodes}) == 3
    quorum = kafka.voters(nodes)
    for node in nodes:
        rendered = props(
            kafka.server_properties(
                node.directory / "data",
                node.port,
                node.controller_port,
                node_id=node.node_id,
                quorum=quorum,
                brokers=3,
            )
        )
        assert rendered["node.id"] == str(node.node_id)
        assert rendered["controller.quorum.voters"] == (
            "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
        )
        assert rendered["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{node.port}"
        for key in (
            "default.replication.factor",
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
        ):
            assert rendered[key] == "3", key
        assert rendered["min.insync.replicas"] == "2"
        assert rendered["transaction.state.log.min.isr"] == "2"


def test_scram_nodes_speak_sasl_ssl_to_clients_and_mutual_tls_between_controllers() -> None:
    tls = kafka.TlsFiles(Path("/t/ca.crt"), Path("/t/k.p12"), "store-secret")
    rendered = props(
        kafka.server_properties(Path("/d"), 9092, 9093, brokers=3, tls=tls, admin_password='a"b\\c')
    )
    assert rendered["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert rendered["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SSL"
    assert rendered["inter.broker.listener.name"] == "SASL_SSL"
    assert rendered["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert rendered["listener.name.controller.ssl.client.auth"] == "required"
    assert rendered["allow.everyone.if.no.acl.found"] == "false"
    assert rendered["authorizer.class.name"].endswith("StandardAuthorizer")
    supers = rendered["super.users"].split(";")
    assert supers == [
        "User:smart-access-admin",
        *(f"User:{kafka.node_cn(i)}" for i in (1, 2, 3)),
    ]
    jaas = rendered["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert 'username="smart-access-admin"' in jaas and 'password="a\\"b\\\\c"' in jaas
    with pytest.raises(ValueError, match="admin principal"):
        kafka.server_properties(Path("/d"), 9092, 9093, tls=tls)


def test_the_tls_material_is_one_ca_and_a_certificate_per_node_keys_private(
    tmp_path: Path,
) -> None:
    files = kafka.ensure_tls(tmp_path / "tls", [1, 2])
    assert files[1].ca_cert == files[2].ca_cert and files[1].keystore != files[2].keystore
    for path in (tmp_path / "tls" / "ca.key", files[1].keystore, files[2].keystore):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    text = subprocess.run(
        [
            "openssl",
            "x509",
            "-in",
            str(tmp_path / "tls" / f"{kafka.node_cn(2)}.crt"),
            "-noout",
            "-text",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in text and f"CN = {kafka.node_cn(2)}" in text
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(files[1].ca_cert),
            str(tmp_path / "tls" / f"{kafka.node_cn(2)}.crt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    before = files[1].keystore.read_bytes()
    assert kafka.ensure_tls(tmp_path / "tls", [1, 2])[1].keystore.read_bytes() == before


def test_switching_profile_on_existing_data_is_one_line_naming_both_ways(tmp_path: Path) -> None:
    root = tmp_path / "kafka"
    (root / "data").mkdir(parents=True)
    (root / "data" / "meta.properties").write_text("cluster.id=x\n")
    kafka.check_profile(root, 1, "none")  # made before profiles: one plaintext node
    with pytest.raises(StackError) as caught:
        kafka.check_profile(root, 3, "scram")
    message = str(caught.value)
    assert "\n" not in message
    assert "KAFKA_BROKERS=1 KAFKA_AUTH=none" in message and "make wipe" in message
    (root / "profile.json").write_text(
        json.dumps({"brokers": 3, "auth": "scram", "admin_sha256": kafka._fingerprint("first")})
    )
    kafka.check_profile(root, 3, "scram", "first")
    with pytest.raises(StackError, match="KAFKA_BROKERS=3 KAFKA_AUTH=scram"):
        kafka.check_profile(root, 3, "none")
    with pytest.raises(StackError, match=r"^KAFKA_ADMIN_PASSWORD differs") as changed:
        kafka.check_profile(root, 3, "scram", "second")
    assert "\n" not in str(changed.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("KAFKA_BROKERS", "2"), ("KAFKA_BROKERS", "three"), ("KAFKA_AUTH", "plain")],
)
def test_a_bad_profile_value_is_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(StackError, match=f"^{variable}=") as caught:
        config(tmp_path, **{variable: value})
    assert "\n" not in str(caught.value)


def test_the_cluster_profile_supervises_three_nodes_each_with_its_metrics_port(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, KAFKA_BROKERS="3", SMART_ACCESS_AIRFLOW="off")
    assert cfg.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"
    entries = {s.name: s for s in services(cfg)}
    assert "kafka" not in entries
    for i, port in ((1, 9092), (2, 9192), (3, 9292)):
        node = entries[f"kafka-{i}"]
        assert node.port == port and node.stage == "infra"
        assert node.command[-1] == str(
            tmp_path / "stack" / "kafka" / f"node-{i}" / "server.properties"
        )
        assert any(f"127.0.0.1:{9403 + i}:" in part for part in node.command)
    assert prometheus.scrape_targets(cfg)["kafka"] == [9404, 9405, 9406]


def test_with_scram_each_service_logs_in_as_its_own_principal(tmp_path: Path) -> None:
    cfg = config(tmp_path, KAFKA_AUTH="scram", KAFKA_CONSUMER_PASSWORD="from-env")
    entries = {s.name: s for s in services(cfg)}
    assert entries["consumer"].env["KAFKA_SASL_USERNAME"] == "smart-access-consumer"
    assert entries["consumer"].env["KAFKA_SASL_PASSWORD"] == "from-env"
    assert entries["consumer"].env["KAFKA_CREDENTIAL_VARIABLE"] == "KAFKA_CONSUMER_PASSWORD"
    assert entries["simulator"].env["KAFKA_SASL_USERNAME"] == "smart-access-simulator"
    conf = supervisord_conf(cfg, list(entries.values()))
    kafka_ui = conf.split("[program:kafka-ui]")[1].split("[program:")[0]
    assert 'KAFKA_SASL_USERNAME="smart-access-inspector"' in kafka_ui
    assert f'KAFKA_SSL_CA_LOCATION="{tmp_path}/stack/kafka/tls/ca.crt"' in kafka_ui
    for variable in (s for s in airflow.connection_env(cfg) if "KAFKA" in s):
        extra = json.loads(airflow.connection_env(cfg)[variable])["extra"]
        assert extra["sasl.username"] == "smart-access-airflow", variable
        assert extra["security.protocol"] == "SASL_SSL"
    # the same settings, read back the way each process reads them
    settings = KafkaSettings(
        **{
            k.removeprefix("KAFKA_").lower(): v
            for k, v in cfg.kafka_env("consumer").items()
            if k != "KAFKA_SSL_CA_LOCATION"
        }
    )
    client = consumer_config(settings, "g", "c")
    assert client["sasl.username"] == "smart-access-consumer"
    assert client["partition.assignment.strategy"] == "cooperative-sticky"
    producer = producer_config(settings, "p")
    assert producer["acks"] == "all" and producer["enable.idempotence"] is True


def test_without_scram_no_service_gets_credentials(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    conf = supervisord_conf(cfg, services(cfg))
    assert "KAFKA_SASL" not in conf and "SASL_SSL" not in conf


def test_every_grant_names_a_principal_and_every_principal_but_admin_has_grants() -> None:
    roles = {p.role for p in principals.PRINCIPALS}
    granted = {g.role for g in principals.ACLS}
    assert granted <= roles
    assert granted == roles - {"admin"}
    assert len({p.username for p in principals.PRINCIPALS}) == len(principals.PRINCIPALS)
    bindings = principals.acl_bindings()
    assert len(bindings) == sum(len(g.operations) for g in principals.ACLS)
    # nobody but the operator may write a data topic besides the simulator, and
    # only the consumer (and operator) the DLQ
    writers = {g.role for g in principals.ACLS if "write" in g.operations}
    assert writers == {"simulator", "consumer", "operator"}
    passwords = principals.passwords({"KAFKA_SIMULATOR_PASSWORD": "s3"})
    assert passwords["simulator"] == "s3" and passwords["consumer"] == "kafka-consumer"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (
            "SASL authentication error: Authentication failed during authentication due to "
            "invalid credentials with SASL mechanism SCRAM-SHA-512",
            "KAFKA_X_PASSWORD",
        ),
        (
            "ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
            "certificate verify failed: broker certificate could not be verified",
            "KAFKA_SSL_CA_LOCATION",
        ),
        (
            "Disconnected while requesting ApiVersion: might be caused by incorrect "
            "security.protocol configuration (connecting to a SSL listener?)",
            "KAFKA_SECURITY_PROTOCOL",
        ),
    ],
)
def test_a_refusal_is_one_line_naming_what_to_set(text: str, names: str) -> None:
    line = refusal(KafkaError(KafkaError._AUTHENTICATION, text), "KAFKA_X_PASSWORD")
    assert line is not None and names in line and "\n" not in line


@pytest.mark.parametrize(
    "text",
    [
        "SSL handshake failed: Disconnected: connection reset by peer (after 8ms)",
        "SASL authentication error: SaslAuthenticateRequest failed: Local: Broker transport "
        "failure",
        "Connect to ipv4#127.0.0.1:9092 failed: Connection refused",
    ],
)
def test_a_broker_going_away_is_not_a_refusal(text: str) -> None:
    assert refusal(KafkaError(KafkaError._TRANSPORT, text)) is None


def test_the_env_file_fills_what_the_shell_did_not_set(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# local settings\n\nKAFKA_AUTH=scram\nexport KAFKA_SIMULATOR_PASSWORD='sim pw'\n"
        'KAFKA_BROKERS="3"\n'
    )
    environ = {"KAFKA_BROKERS": "1"}
    assert load_env_file(env_file, environ) == ["KAFKA_AUTH", "KAFKA_SIMULATOR_PASSWORD"]
    assert environ == {
        "KAFKA_BROKERS": "1",
        "KAFKA_AUTH": "scram",
        "KAFKA_SIMULATOR_PASSWORD": "sim pw",
    }
    env_file.write_text("KAFKA_AUTH scram\n")
    with pytest.raises(StackError, match=r"\.env:1: expected KEY=VALUE"):
        load_env_file(env_file, {})
    assert load_env_file(tmp_path / "missing", {}) == []


def test_the_nodes_of_a_cluster_stop_together_everything_else_in_order() -> None:
    from stack.cli import _stop_batches

    assert _stop_batches(
        ["simulator", "consumer", "kafka-1", "kafka-2", "kafka-3", "postgres"]
    ) == [
        ["simulator"],
        ["consumer"],
        ["kafka-1", "kafka-2", "kafka-3"],
        ["postgres"],
    ]
    assert _stop_batches(["consumer", "kafka", "kafka-ui", "postgres"]) == [
        ["consumer"],
        ["kafka"],
        ["kafka-ui"],
        ["postgres"],
    ]


@pytest.mark.parametrize("password", ["", "a,b", "x=y", "[z]", 'q"uote'])
def test_an_admin_password_the_storage_tool_cannot_read_is_one_line(
    tmp_path: Path, password: str
) -> None:
    with pytest.raises(StackError, match=r"^KAFKA_ADMIN_PASSWORD must be set") as caught:
        kafka.prepare(tmp_path / "kafka", 9092, 9093, auth="scram", admin_password=password)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "kafka").exists()  # refused before anything was written
