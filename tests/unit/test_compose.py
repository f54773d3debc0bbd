"""The Docker Compose path, checked offline: no Docker, no services.

Both compose files validate against the Compose Specification; their references
hold (depends_on, variables, ports, healthchecks, what the Dockerfiles copy); and
they describe the same platform as `make up`: topics, databases, roles, ports, the
DAG, and the Kafka and Airflow versions pinned for the embedded stack. That holds for
each Kafka profile: one plaintext node (no variables), the three-node cluster and
SCRAM over TLS, whose variables the Kafka file's header documents; the scripts the
Kafka containers run are run here in bash against stand-ins for the image's tools.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from stack.airflow import METADATA_ROLE
from stack.config import AIRFLOW_DATABASE, DATABASE, DEFAULT_ROLE_PASSWORDS, StackConfig
from stack.kafka import TlsFiles, node_cn, server_properties
from streaming.principals import ACLS, ADMIN, PRINCIPALS, password_variable
from streaming.topics import CONSUMER_GROUP, TOPICS

ROOT = Path(__file__).resolve().parents[2]
KAFKA_FILE = ROOT / "docker-compose.kafka.yml"
AIRFLOW_FILE = ROOT / "docker-compose.airflow.yml"
COMPOSE_FILES = (KAFKA_FILE, AIRFLOW_FILE)
# `.env.airflow` (Airflow settings, shared with the embedded stack) plus the variables
# the compose files add; the second file is folded into the first when merged.
ENV_FILES = (ROOT / ".env.airflow",)
DAG_ID = "smart_access_streaming_pipeline"
CONTRACT_HOST_PORTS = {
    ("kafka", 9092),
    ("kafka-ui", 8090),
    ("airflow-api-server", 8080),
    ("dashboard", 8501),
    ("postgres", 5432),
}
# The Kafka profiles as docker-compose.kafka.yml's header documents them (for `.env`).
CLUSTER_ENV = {"COMPOSE_PROFILES": "cluster", "KAFKA_BROKERS": "3", "KAFKA_MIN_ISR": "2"}
SCRAM_ENV = {"KAFKA_TLS": "SSL"}
PROFILES = {"one node": {}, "cluster": CLUSTER_ENV, "scram": SCRAM_ENV}
PROFILES["cluster with scram"] = CLUSTER_ENV | SCRAM_ENV
NODES = {"kafka": 1, "kafka-2": 2, "kafka-3": 3}
CLUSTER_BOOTSTRAP = "kafka:19092,kafka-2:19092,kafka-3:19092"
QUORUM = "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
SECRETS = "/etc/kafka/secrets"
CA = f"{SECRETS}/ca.crt"
# What the image keeps out of server.properties (kafka.docker.KafkaDockerWrapper).
IMAGE_EXCLUDED = {"KAFKA_VERSION", "KAFKA_HEAP_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS"}
IMAGE_EXCLUDED |= {"KAFKA_JMX_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS"}
IMAGE_EXCLUDED |= {"KAFKA_LOG4J_ROOT_LOGLEVEL", "KAFKA_LOG4J_LOGGERS"}
IMAGE_EXCLUDED |= {"KAFKA_TOOLS_LOG4J_LOGLEVEL", "KAFKA_JMX_HOSTNAME"}
_TOKEN = re.compile(
    r"\$\$"  # an escaped dollar
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^{}$]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<bad>\$)"
)


# --- helpers ----------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


def services(path: Path) -> dict[str, dict[str, Any]]:
    return load(path)["services"]


def strings(node: Any) -> list[str]:
    """Every string value (not key) in a parsed YAML tree."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


def references(path: Path) -> dict[str, set[str]]:
    """Variable name -> the interpolation operators it is used with ('' for none)."""
    found: dict[str, set[str]] = {}
    data = load(path)
    for text in strings(data) + [str(k) for k in _keys(data)]:
        for match in _TOKEN.finditer(text):
            assert not match.group("bad"), f"{path.name}: unsupported '$' in {text!r}"
            name = match.group("name") or match.group("bare")
            if name:
                found.setdefault(name, set()).add(match.group("op") or "")
    return found


def _keys(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node) + [k for value in node.values() for k in _keys(value)]
    if isinstance(node, list):
        return [k for value in node for k in _keys(value)]
    return []


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation rules for the forms these files use."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise KeyError(f"{name}: {arg}")
        if op == ":+":
            return arg if value else ""
        return value or ""

    return _TOKEN.sub(replace, text)


def env_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for path in ENV_FILES:
        if not path.exists():
            continue
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            assert "=" in line, f"{path.name}:{number} is not KEY=VALUE: {line!r}"
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def require(relative: str) -> Path:
    path = ROOT / relative
    if not path.exists():
        pytest.fail(f"{relative} does not exist")
    return path


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def active(path: Path, profiles: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """The services `docker compose up` starts with these profiles enabled."""
    return {
        name: service
        for name, service in services(path).items()
        if not service.get("profiles") or set(service["profiles"]) & set(profiles)
    }


def host_ports(
    path: Path, env: dict[str, str], profiles: tuple[str, ...] | None = None
) -> list[tuple[str, int, int]]:
    """(service, host port, container port) of every published port (of the services
    of `profiles`; of every service when None)."""
    published = []
    chosen = services(path) if profiles is None else active(path, profiles)
    for name, service in chosen.items():
        for entry in service.get("ports", []):
            assert isinstance(entry, str), f"{name}: use the short 'HOST:CONTAINER' form"
            host, container = interpolate(entry, env).rsplit(":", 1)
            published.append((name, int(host.rsplit(":", 1)[-1]), int(container)))
    return published


def one_shots(data: dict[str, Any]) -> set[str]:
    return {name for name, svc in data["services"].items() if svc.get("restart") == "no"}


def kafka_env() -> dict[str, str]:
    return environment(services(KAFKA_FILE)["kafka"])


def rendered(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """A service's environment as compose hands it to the container."""
    return {key: interpolate(value, env) for key, value in environment(service).items()}


def run_env(path: Path, env: dict[str, str]) -> dict[str, str]:
    """What compose interpolates `path` with: the Airflow half always gets .env.airflow."""
    return env_values() | env if path == AIRFLOW_FILE else env


def image_properties(env: dict[str, str]) -> dict[str, str]:
    """server.properties as the apache/kafka image writes it from KAFKA_* variables:
    the prefix goes, `_` becomes `.`, then `...` becomes `-` and `..` becomes `_`."""
    properties = {}
    for name, value in env.items():
        if not name.startswith("KAFKA_") or name in IMAGE_EXCLUDED:
            continue
        key = name.removeprefix("KAFKA_").lower().replace("_", ".")
        properties[key.replace("...", "-").replace("..", "_")] = value
    return properties


def node_properties(name: str, env: dict[str, str]) -> dict[str, str]:
    return image_properties(rendered(services(KAFKA_FILE)[name], env))


def embedded_properties(node_id: int, brokers: int, tls: bool) -> dict[str, str]:
    """The embedded stack's configuration of the same node (stack/kafka.py)."""
    files = TlsFiles(Path(CA), Path(f"{SECRETS}/{node_cn(node_id)}.p12"), "generated")
    text = server_properties(
        Path("/data"),
        9092,
        9093,
        node_id=node_id,
        brokers=brokers,
        tls=files if tls else None,
        admin_password="kafka-admin" if tls else None,
    )
    return dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")


def assert_same_broker_settings(compose: dict[str, str], embedded: dict[str, str]) -> None:
    # Where a node listens and keeps its log differs by design (listeners are checked
    # on their own); the keystore's password is generated, read at start.
    skipped = {"log.dirs", "controller.quorum.voters", "ssl.keystore.password", "ssl.key.password"}
    compared = 0
    for key, value in embedded.items():
        if "listener" in key or key in skipped:
            continue
        assert compose.get(key) == value, f"{key}: compose {compose.get(key)!r}, embedded {value!r}"
        compared += 1
    assert compared >= 10


def script(name: str, env: dict[str, str]) -> str:
    """The bash script a service runs (`bash -c SCRIPT`), as compose passes it."""
    command = services(KAFKA_FILE)[name]["command"]
    assert command[:2] == ["bash", "-c"], f"{name} runs {command[:2]}"
    return interpolate(command[2], env)


def run_bash(text: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", text],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def internal_bootstrap() -> str:
    listeners = dict(
        item.split("://", 1) for item in kafka_env()["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    return listeners[kafka_env()["KAFKA_INTER_BROKER_LISTENER_NAME"]]


def dockerfiles() -> list[Path]:
    found = set()
    for path in COMPOSE_FILES:
        for service in services(path).values():
            build = service.get("build")
            if build:
                found.add(ROOT / build.get("context", ".") / build["dockerfile"])
    return sorted(found)


# --- the Compose Specification ----------------------------------------------------------


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "check-jsonschema"
    assert tool.exists(), "check-jsonschema is missing from the dev dependencies; make setup"
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_validates_against_the_compose_specification(path: Path) -> None:
    result = _check_jsonschema(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_is_vendored_and_rejects_a_misspelled_key(tmp_path: Path) -> None:
    import check_jsonschema

    vendored = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor"
    assert (vendored / "compose-spec.json").is_file(), "validation would need the network"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(KAFKA_FILE.read_text().replace("healthcheck:", "healthchek:", 1))
    result = _check_jsonschema(broken)
    assert result.returncode == 1 and "healthchek" in result.stdout


# --- cross-references -------------------------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_depends_on_targets_exist_and_conditions_make_sense(path: Path) -> None:
    data = load(path)
    names = set(data["services"])
    for name, service in data["services"].items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: give depends_on a condition per service"
        for target, rule in depends.items():
            assert target in names, f"{name} depends on {target}, not in {path.name}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in data["services"][target], f"{target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert target in one_shots(data), f"{target} is not a one-shot service"
            else:
                pytest.fail(f"{name} -> {target}: use service_healthy or _completed_successfully")


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_long_running_service_has_a_healthcheck_and_a_restart_policy(path: Path) -> None:
    data = load(path)
    for name, service in data["services"].items():
        if name in one_shots(data):
            continue
        assert service.get("restart") in {"unless-stopped", "always"}, f"{name}: restart policy"
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name}: healthcheck"


# `${VAR:+text}` is text when VAR is set, else empty: never an error.
SAFE_WHEN_UNSET = {":-", "-", ":+"}


def test_kafka_file_starts_without_an_env_file() -> None:
    found = references(KAFKA_FILE)
    for name, ops in found.items():
        assert ops <= SAFE_WHEN_UNSET, f"{name} needs a default in docker-compose.kafka.yml"
    assert {"KAFKA_BROKERS", "KAFKA_TLS", "KAFKA_MIN_ISR", "KAFKA_ADMIN_PASSWORD"} <= set(found)


def test_every_airflow_variable_is_defined_or_has_a_default() -> None:
    defined = env_values()
    for name, ops in references(AIRFLOW_FILE).items():
        if ops <= SAFE_WHEN_UNSET:
            continue
        assert defined.get(name), f"{name} is used without a default and is not in .env.airflow"


def test_values_that_must_be_set_say_so_and_are_set() -> None:
    required = {n for n, ops in references(AIRFLOW_FILE).items() if ":?" in ops}
    assert {"POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY"} <= required
    defined = env_values()
    for name in required:
        assert defined.get(name), f"{name} must be set in .env.airflow"
    for text in AIRFLOW_FILE.read_text().splitlines():
        for match in _TOKEN.finditer(text):
            if match.group("op") == ":?":
                assert "set " in match.group("arg"), f"say how to fix: {match.group(0)}"
    key = base64.urlsafe_b64decode(defined["AIRFLOW_FERNET_KEY"])
    assert len(key) == 32, "AIRFLOW_FERNET_KEY is not a Fernet key"


def test_airflow_file_interpolates_with_the_env_file() -> None:
    env = env_values()
    texts = strings(load(AIRFLOW_FILE))
    rendered = [interpolate(text, env) for text in texts]
    # Only `$${...}` (a literal for the container's shell) may leave a `${` behind.
    assert sum(t.count("${") for t in rendered) == sum(t.count("$${") for t in texts)
    scheduler = environment(services(AIRFLOW_FILE)["airflow-scheduler"])
    secret = interpolate(scheduler["AIRFLOW__API_AUTH__JWT_SECRET"], env)
    assert secret == env["AIRFLOW_JWT_SECRET"]
    for needed in ("POSTGRES_PASSWORD", "AIRFLOW_METADATA_PASSWORD"):
        without = {k: v for k, v in env.items() if k != needed}
        with pytest.raises(KeyError, match=f"{needed}: set {needed} in .env.airflow"):
            interpolate(AIRFLOW_FILE.read_text(), without)


def test_no_host_port_clashes_across_both_files() -> None:
    # every service of every profile at once, as the cluster runs them
    for env in ({}, env_values(), CLUSTER_ENV):
        published = [p for path in COMPOSE_FILES for p in host_ports(path, env)]
        ports = [host for _, host, _ in published]
        assert len(ports) == len(set(ports)), f"clash: {published}"


def test_the_two_halves_share_one_named_network() -> None:
    owner = load(KAFKA_FILE)["networks"]["default"]
    joiner = load(AIRFLOW_FILE)["networks"]["default"]
    assert owner["name"] == joiner["name"] == "smart-access"
    assert not owner.get("external") and joiner.get("external") is True
    assert load(KAFKA_FILE)["name"] != load(AIRFLOW_FILE)["name"], "one project per file"
    for path in COMPOSE_FILES:
        for name, service in services(path).items():
            assert "networks" not in service, f"{name} leaves the shared default network"


def test_named_volumes_are_declared() -> None:
    for path in COMPOSE_FILES:
        data = load(path)
        declared = set(data.get("volumes") or {})
        for name, service in data["services"].items():
            for volume in service.get("volumes", []):
                source = volume.split(":", 1)[0]
                if not source.startswith((".", "/")):
                    assert source in declared, f"{name}: volume {source} is not declared"
    assert "kafka-data" in {v.split(":")[0] for v in services(KAFKA_FILE)["kafka"]["volumes"]}, (
        "Kafka keeps its log in a named volume"
    )


def test_bind_mounts_exist() -> None:
    for path in COMPOSE_FILES:
        for service in services(path).values():
            for volume in service.get("volumes", []):
                source = volume.split(":", 1)[0]
                if source.startswith("./"):
                    require(source[2:])


def test_build_files_exist_and_every_copy_source_exists() -> None:
    files = dockerfiles()
    assert {p.name for p in files} == {"Dockerfile", "airflow.Dockerfile"}
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = 0
    for dockerfile in files:
        for line in dockerfile.read_text().splitlines():
            words = line.split()
            if not words or words[0].upper() not in {"COPY", "ADD"}:
                continue
            if any(w.startswith("--from") for w in words):
                continue
            sources = [w for w in words[1:-1] if not w.startswith("--")]
            for source in sources:
                relative = source.rstrip("/")
                require(relative)
                assert relative not in ignored, f"{relative} is excluded by .dockerignore"
                copied += 1
    assert copied >= 6


def test_dockerignore_keeps_runtime_output_out_of_images() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", ".stack", ".git", "stack/kafka-jars/target", "dbt_project/target"):
        assert entry in ignored


def test_commands_the_services_run_exist() -> None:
    for path in COMPOSE_FILES:
        for service in services(path).values():
            command = service.get("command")
            if not isinstance(command, list):
                continue
            if command[:2] == ["python", "-m"]:
                module = command[2].replace(".", "/")
                require(f"{module}/__main__.py" if (ROOT / module).is_dir() else f"{module}.py")
            if command[:2] == ["streamlit", "run"]:
                require(command[2])


# --- parity with the embedded stack -----------------------------------------------------


def _plan(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "deploy.create_topics", "--plan"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        timeout=60,
        check=True,
    )
    plan: dict[str, Any] = json.loads(result.stdout)
    return plan


def test_topic_init_creates_the_topics_of_streaming_topics() -> None:
    init = services(KAFKA_FILE)["topic-init"]
    assert init["build"]["dockerfile"] == "deploy/Dockerfile"
    assert init["command"][:3] == ["python", "-m", "deploy.create_topics"]
    assert "COPY streaming/ streaming/" in (ROOT / "deploy" / "Dockerfile").read_text()
    plan = _plan(rendered(init, {}))
    assert plan["topics"] == [
        {"name": s.name, "partitions": s.partitions, "config": s.config} for s in TOPICS
    ]
    assert {t["name"] for t in plan["topics"]} == {
        "smart-access.events",
        "smart-access.health",
        "smart-access.devices",
        "smart-access.dlq",
    }
    assert plan["manage_principals"] is False, "a plaintext cluster has no principals"
    # topics get their three replicas only once topic-init sees all three brokers
    for env, brokers in (({}, "1"), (CLUSTER_ENV, "3")):
        command = [interpolate(word, env) for word in init["command"]]
        assert command[command.index("--brokers") + 1] == brokers
    for service in ("producer", "consumer"):
        depends = services(KAFKA_FILE)[service]["depends_on"]
        assert depends["topic-init"]["condition"] == "service_completed_successfully"


def test_topic_init_sets_the_principals_and_acls_of_streaming_principals() -> None:
    init = services(KAFKA_FILE)["topic-init"]
    env = rendered(init, SCRAM_ENV)
    assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_USERNAME"]) == (
        "SASL_SSL",
        ADMIN.username,
    )
    plan = _plan(env)
    assert plan["manage_principals"] is True
    assert plan["principals"] == [
        {"username": f"smart-access-{p.role}", "password_variable": password_variable(p.role)}
        for p in PRINCIPALS
    ]
    assert plan["acls"] == [
        {
            "principal": f"User:smart-access-{g.role}",
            "resource": g.resource,
            "name": g.name,
            "pattern": g.pattern,
            "operations": list(g.operations),
        }
        for g in ACLS
    ]
    # Each password reaches topic-init under the variable the plan names, with the
    # documented local default; the admin logs in with the one it sets for itself.
    for principal in PRINCIPALS:
        assert env[password_variable(principal.role)] == principal.default_password
    assert env["KAFKA_SASL_PASSWORD"] == env["KAFKA_ADMIN_PASSWORD"]
    moved = rendered(init, SCRAM_ENV | {"KAFKA_ADMIN_PASSWORD": "s3cret"})
    assert moved["KAFKA_SASL_PASSWORD"] == moved["KAFKA_ADMIN_PASSWORD"] == "s3cret"


def test_the_header_documents_the_profile_variables() -> None:
    header = KAFKA_FILE.read_text().split("\nname:", 1)[0]
    documented = dict(re.findall(r"^#\s{3,}([A-Z_]+)=(\S+)$", header, re.M))
    assert documented == CLUSTER_ENV | SCRAM_ENV
    assert "--env-file .env.airflow --env-file .env" in " ".join(header.replace("#", "").split())


def test_broker_settings_equal_the_embedded_broker() -> None:
    props = node_properties("kafka", {})
    assert_same_broker_settings(props, embedded_properties(1, brokers=1, tls=False))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@kafka:9093"
    env = kafka_env()
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID: a UUID"
    # Without KAFKA_TLS a node has no authorizer, SASL or TLS: what only those read stays
    # empty, but for the super users and the certificate mapping (no file, no secret).
    embedded = embedded_properties(1, brokers=1, tls=False)
    extra = {k: v for k, v in props.items() if k not in embedded and v and "listener" not in k}
    # one node spells out Kafka's own defaults, which the cluster raises to 3 and 2
    assert extra.pop("default.replication.factor") == extra.pop("min.insync.replicas") == "1"
    assert set(extra) == {"super.users", "ssl.principal.mapping.rules"}, extra
    assert props["authorizer.class.name"] == props["sasl.enabled.mechanisms"] == ""
    assert set(props["listener.security.protocol.map"].split(",")) == {
        "INTERNAL:PLAINTEXT",
        "HOST:PLAINTEXT",
        "CONTROLLER:PLAINTEXT",
    }


def test_cluster_profile_nodes_equal_the_embedded_cluster() -> None:
    cluster = active(KAFKA_FILE, ("cluster",))
    assert set(NODES) <= set(cluster)
    assert set(NODES) - set(active(KAFKA_FILE)) == {"kafka-2", "kafka-3"}, "one node by default"
    for name, node_id in NODES.items():
        props = node_properties(name, CLUSTER_ENV)
        assert_same_broker_settings(props, embedded_properties(node_id, brokers=3, tls=False))
        assert props["controller.quorum.voters"] == QUORUM, f"{name}: a quorum of all three"
        assert props["node.id"] == str(node_id)
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
        advertised = dict(i.split("://", 1) for i in props["advertised.listeners"].split(","))
        assert advertised["INTERNAL"] == f"{name}:19092", f"{name} advertises another host"


def test_cluster_nodes_are_long_running_with_their_own_health_and_storage() -> None:
    kafka = services(KAFKA_FILE)
    volumes = set()
    for name in NODES:
        node = kafka[name]
        assert node["image"] == kafka["kafka"]["image"], f"{name} runs another Kafka"
        assert node["restart"] == "unless-stopped", name
        assert node["hostname"] == name
        check = " ".join(node["healthcheck"]["test"])
        assert f"--bootstrap-server {name}:19092" in check, f"{name} checks another broker"
        assert "--command-config /tmp/smart-access-client.properties" in check
        assert node["healthcheck"]["retries"] >= 3 and node["healthcheck"]["start_period"]
        data = [v for v in node["volumes"] if v.endswith(":/var/lib/kafka/data")]
        assert len(data) == 1, f"{name} keeps its log in one named volume"
        volumes.add(data[0])
        depends = node["depends_on"]["kafka-setup"]
        assert depends["condition"] == "service_completed_successfully"
        assert name == "kafka" or node["profiles"] == ["cluster"]
    assert len(volumes) == 3, "each node has its own data volume"


@pytest.mark.parametrize("brokers", [1, 3])
def test_scram_nodes_equal_the_embedded_scram_brokers(brokers: int) -> None:
    env = SCRAM_ENV | (CLUSTER_ENV if brokers == 3 else {})
    nodes = NODES if brokers == 3 else {"kafka": 1}
    for name, node_id in nodes.items():
        props = node_properties(name, env)
        embedded = embedded_properties(node_id, brokers=brokers, tls=True)
        assert_same_broker_settings(props, embedded)
        assert props["authorizer.class.name"].endswith(".StandardAuthorizer")
        assert props["ssl.keystore.location"] == f"{SECRETS}/{node_cn(node_id)}.p12"
        # clients and brokers: SCRAM over TLS; controllers: TLS with client certificates
        protocols = dict(i.split(":") for i in props["listener.security.protocol.map"].split(","))
        assert protocols == {"INTERNAL": "SASL_SSL", "HOST": "SASL_SSL", "CONTROLLER": "SSL"}
        assert props["inter.broker.listener.name"] == "INTERNAL"
        assert props["listener.name.controller.ssl.client.auth"] == "required"
        # the brokers log in to each other as the admin, exactly as the embedded ones do
        login = "listener.name.internal.scram-sha-512.sasl.jaas.config"
        assert props[login] == embedded["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
        assert "listener.name.host.scram-sha-512.sasl.jaas.config" in props
        assert props["super.users"].count("User:") == brokers + 1
    moved = node_properties("kafka", env | {"KAFKA_ADMIN_PASSWORD": "s3cret"})
    assert 'password="s3cret"' in moved["listener.name.internal.scram-sha-512.sasl.jaas.config"]


def _sandbox(tmp_path: Path, text: str) -> str:
    """The node start script with the image's paths in `tmp_path`: its storage tool and
    start are stand-ins that record what they were given."""
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "secrets").mkdir(exist_ok=True)
    (tmp_path / "secrets" / "keystore-password").write_text("generated-pw\n")
    storage = tmp_path / "kafka-storage.sh"
    storage.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {tmp_path}/format-args\n'
        "while [ $# -gt 0 ]; do\n"
        f'  [ "$1" != --config ] || cp "$2" {tmp_path}/formatted.properties\n'
        "  shift\n"
        "done\n"
        f"touch {tmp_path}/data/meta.properties\n"
    )
    run = tmp_path / "run"
    run.write_text('#!/bin/sh\necho "started; keystore password $KAFKA_SSL_KEYSTORE_PASSWORD"\n')
    for stub in (storage, run):
        stub.chmod(0o755)
    for path, sandboxed in (
        ("/tmp/", f"{tmp_path}/"),  # noqa: S108 - the script's own paths, moved
        ("/var/lib/kafka/data", f"{tmp_path}/data"),
        (SECRETS, f"{tmp_path}/secrets"),
        ("/opt/kafka/bin/kafka-storage.sh", str(storage)),
        ("/etc/kafka/docker/run", str(run)),
    ):
        assert path in text, f"the start script no longer uses {path}"
        text = text.replace(path, sandboxed)
    return text


def test_node_start_formats_with_the_admin_credential_and_keeps_the_profile(
    tmp_path: Path,
) -> None:
    env = CLUSTER_ENV | SCRAM_ENV
    node = rendered(services(KAFKA_FILE)["kafka-2"], env)
    started = run_bash(_sandbox(tmp_path, script("kafka-2", env)), node)
    assert started.returncode == 0, started.stderr
    assert "started; keystore password generated-pw" in started.stdout
    args = (tmp_path / "format-args").read_text().splitlines()
    assert args[:3] == ["format", "--cluster-id", node["CLUSTER_ID"]]
    assert args[-2:] == [
        "--add-scram",
        "SCRAM-SHA-512=[name=smart-access-admin,password=kafka-admin]",
    ]
    # the storage is formatted from the same server.properties the image then writes
    formatted = dict(
        line.split("=", 1) for line in (tmp_path / "formatted.properties").read_text().splitlines()
    )
    password = {
        "KAFKA_SSL_KEYSTORE_PASSWORD": "generated-pw",
        "KAFKA_SSL_KEY_PASSWORD": "generated-pw",
    }
    assert formatted == image_properties(node | password)
    assert not (tmp_path / "format.properties").exists(), "the rendered copy is removed"
    client = (tmp_path / "smart-access-client.properties").read_text()
    assert "security.protocol=SASL_SSL" in client and 'username="smart-access-admin"' in client

    # a restart leaves the formatted store alone
    (tmp_path / "format-args").unlink()
    again = run_bash(_sandbox(tmp_path, script("kafka-2", env)), node)
    assert again.returncode == 0 and not (tmp_path / "format-args").exists()

    # the volume keeps its profile: the same node without KAFKA_TLS refuses to start
    plain = rendered(services(KAFKA_FILE)["kafka-2"], CLUSTER_ENV)
    refused = run_bash(_sandbox(tmp_path, script("kafka-2", CLUSTER_ENV)), plain)
    assert refused.returncode == 1 and "started" not in refused.stdout
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "brokers=3 tls=SSL, not brokers=3 tls=none" in refused.stderr


def test_a_plaintext_node_starts_as_the_image_does(tmp_path: Path) -> None:
    node = rendered(services(KAFKA_FILE)["kafka"], {})
    started = run_bash(_sandbox(tmp_path, script("kafka", {})), node)
    assert started.returncode == 0, started.stderr
    # the image formats it; no keystore password, no SCRAM
    assert "started; keystore password \n" in started.stdout
    assert not (tmp_path / "format-args").exists()
    assert (tmp_path / "smart-access-client.properties").read_text() == (
        "security.protocol=PLAINTEXT\n"
    )
    assert (tmp_path / "data" / "smart-access-profile").read_text() == "brokers=1 tls=none\n"
    # a volume from before profiles (formatted, no record) counts as one plaintext node
    (tmp_path / "data" / "smart-access-profile").unlink()
    (tmp_path / "data" / "meta.properties").touch()
    assert run_bash(_sandbox(tmp_path, script("kafka", {})), node).returncode == 0
    cluster = rendered(services(KAFKA_FILE)["kafka"], CLUSTER_ENV)
    refused = run_bash(_sandbox(tmp_path, script("kafka", CLUSTER_ENV)), cluster)
    assert refused.returncode == 1 and "brokers=1 tls=none, not brokers=3" in refused.stderr


def _setup(env: dict[str, str], tmp_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """kafka-setup's script; with `tmp_path`, its TLS volume there and a keytool that
    logs its arguments and leaves a file wherever it would write one."""
    text = script("kafka-setup", env)
    extra = {}
    if tmp_path is not None:
        (tmp_path / "secrets").mkdir(exist_ok=True)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        keytool = bin_dir / "keytool"
        keytool.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> {tmp_path}/keytool.log\n'
            "previous=\n"
            'for arg in "$@"; do\n'
            '  case "$previous" in -keystore|-file) [ -s "$arg" ] || echo made > "$arg" ;; esac\n'
            '  previous="$arg"\n'
            "done\n"
            'case "$1" in -certreq) echo request ;; -gencert) cat > /dev/null; echo cert ;; esac\n'
        )
        keytool.chmod(0o755)
        assert SECRETS in text and "appuser:root" in text
        text = text.replace(SECRETS, str(tmp_path / "secrets"))
        text = text.replace("appuser:root", f"{os.getuid()}:{os.getgid()}")
        extra = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    service = services(KAFKA_FILE)["kafka-setup"]
    return run_bash(text, rendered(service, env) | extra)


@pytest.mark.parametrize("name", list(PROFILES))
def test_kafka_setup_accepts_each_documented_profile(name: str, tmp_path: Path) -> None:
    result = _setup(PROFILES[name], tmp_path)
    assert result.returncode == 0, result.stderr
    made = (tmp_path / "keytool.log").exists()
    assert made == ("KAFKA_TLS" in PROFILES[name]), "TLS material only for KAFKA_TLS=SSL"


def test_kafka_setup_makes_the_tls_material_once(tmp_path: Path) -> None:
    assert _setup(SCRAM_ENV, tmp_path).returncode == 0
    secrets = tmp_path / "secrets"
    keys = ["ca.p12", "keystore-password", *(f"{node_cn(i)}.p12" for i in NODES.values())]
    assert sorted(p.name for p in secrets.iterdir()) == sorted([*keys, "ca.crt"])
    # the brokers' keys are theirs alone; the CA certificate is every client's
    for key in keys:
        assert (secrets / key).stat().st_mode & 0o777 == 0o600, key
    assert (secrets / "ca.crt").stat().st_mode & 0o777 == 0o644
    assert re.fullmatch(r"[0-9a-f]{48}", (secrets / "keystore-password").read_text())
    calls = (tmp_path / "keytool.log").read_text().splitlines()
    for name, node_id in NODES.items():
        # each node's own key, signed by the CA for its host name (and localhost)
        san = f"SAN=dns:{name},dns:localhost,ip:127.0.0.1"
        signed = [c for c in calls if c.startswith("-gencert") and san in c]
        assert len(signed) == 1 and "-alias ca " in signed[0], name
        key = f"-dname CN={node_cn(node_id)} "
        assert any(c.startswith("-genkeypair") and key in c for c in calls), name
    # a second start keeps the material (and the brokers' trust in it)
    password = (secrets / "keystore-password").read_text()
    assert _setup(SCRAM_ENV, tmp_path).returncode == 0
    assert (tmp_path / "keytool.log").read_text().splitlines() == calls
    assert (secrets / "keystore-password").read_text() == password


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"KAFKA_BROKERS": "1"}, "KAFKA_BROKERS=1: it is 3, or unset"),
        ({"KAFKA_BROKERS": "3"}, "KAFKA_BROKERS=3 needs KAFKA_MIN_ISR=2"),
        ({"KAFKA_MIN_ISR": "2"}, "KAFKA_MIN_ISR=2 needs the cluster"),
        ({"COMPOSE_PROFILES": "cluster"}, "COMPOSE_PROFILES=cluster and KAFKA_BROKERS=unset"),
        ({"KAFKA_TLS": "on"}, "KAFKA_TLS=on: it is SSL"),
        ({"KAFKA_AUTH": "scram"}, "KAFKA_AUTH=scram, but here KAFKA_TLS=SSL turns SCRAM on"),
    ],
)
def test_kafka_setup_stops_inconsistent_variables_with_one_line(
    env: dict[str, str], says: str
) -> None:
    result = _setup(env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert says in result.stderr and "docker-compose.kafka.yml's header" in result.stderr


def test_kafka_listeners_serve_containers_and_the_host() -> None:
    env = rendered(services(KAFKA_FILE)["kafka"], {})
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) == set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["HOST"] == "localhost:9092"
    assert listeners["HOST"] == ":9092"
    assert ("kafka", 9092, 9092) in host_ports(KAFKA_FILE, {})
    for name, variable, port in (
        ("kafka", "KAFKA_PORT", 19093),
        ("kafka-2", "KAFKA_2_PORT", 19193),
        ("kafka-3", "KAFKA_3_PORT", 19293),
    ):
        moved = rendered(services(KAFKA_FILE)[name], {variable: str(port)})
        host = dict(i.split("://", 1) for i in moved["KAFKA_ADVERTISED_LISTENERS"].split(","))
        assert host["HOST"] == f"localhost:{port}", (
            f"{name}: the advertised port follows {variable}"
        )
        assert (name, port, 9092) in host_ports(KAFKA_FILE, {variable: str(port)})
    health = " ".join(services(KAFKA_FILE)["kafka"]["healthcheck"]["test"])
    assert "kafka-broker-api-versions.sh" in health and internal_bootstrap() in health


def test_every_client_uses_the_internal_listener() -> None:
    bootstrap = internal_bootstrap()
    assert bootstrap == "kafka:19092"
    for env, expected in (({}, bootstrap), (CLUSTER_ENV, CLUSTER_BOOTSTRAP)):
        seen = 0
        for path in COMPOSE_FILES:
            for name, service in services(path).items():
                values = rendered(service, run_env(path, env))
                if "KAFKA_BOOTSTRAP_SERVERS" in values:
                    assert values["KAFKA_BOOTSTRAP_SERVERS"] == expected, name
                    seen += 1
        assert seen >= 8  # topic-init, producer, consumer, dashboard, Airflow's components
        ui = rendered(services(KAFKA_FILE)["kafka-ui"], env)
        assert ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == expected
        scheduler = rendered(
            services(AIRFLOW_FILE)["airflow-scheduler"], run_env(AIRFLOW_FILE, env)
        )
        for conn in (
            "AIRFLOW_CONN_SMART_ACCESS_KAFKA",
            "AIRFLOW_CONN_SMART_ACCESS_KAFKA_DLQ_WATCHER",
        ):
            extra = json.loads(scheduler[conn])["extra"]
            assert extra["bootstrap.servers"] == expected, conn
    assert CLUSTER_BOOTSTRAP.split(",") == [f"{n}:19092" for n in NODES]


# Which principal each client logs in as (streaming/principals.py), as in `make up`.
CLIENT_ROLES = {
    (KAFKA_FILE, "topic-init"): "admin",
    (KAFKA_FILE, "producer"): "simulator",
    (KAFKA_FILE, "consumer"): "consumer",
    (AIRFLOW_FILE, "dashboard"): "inspector",
    (AIRFLOW_FILE, "airflow-scheduler"): "inspector",
    (AIRFLOW_FILE, "airflow-triggerer"): "inspector",
}
SASL_KEYS = ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SSL_CA_LOCATION")


def _stack(tmp_path: Path, env: dict[str, str]) -> StackConfig:
    return StackConfig.from_env({"SMART_ACCESS_STACK_DIR": str(tmp_path), **env})


def _scram_stack(tmp_path: Path) -> StackConfig:
    """The embedded stack's view of the compose cluster with SCRAM: what each client's
    settings must equal."""
    env = {
        "KAFKA_AUTH": "scram",
        "KAFKA_BOOTSTRAP_SERVERS": CLUSTER_BOOTSTRAP,
        "KAFKA_SSL_CA_LOCATION": CA,
    }
    return _stack(tmp_path, env)


def test_clients_log_in_as_the_embedded_stacks_principals(tmp_path: Path) -> None:
    scram = _scram_stack(tmp_path)
    plain = _stack(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": "kafka:19092"})
    for (path, name), role in CLIENT_ROLES.items():
        service = services(path)[name]
        expected = scram.kafka_env(role)
        values = rendered(service, run_env(path, CLUSTER_ENV | SCRAM_ENV))
        assert {k: values.get(k) for k in expected} == expected, f"{name} as {role}"
        assert f"kafka-tls:{SECRETS}:ro" in service["volumes"], f"{name} cannot read the CA"
        # plaintext: librdkafka warns of a SASL mechanism or user it does not use
        values = rendered(service, run_env(path, {}))
        assert values["KAFKA_BOOTSTRAP_SERVERS"] == plain.kafka_env(role)["KAFKA_BOOTSTRAP_SERVERS"]
        assert values["KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
        assert all(values[k] == "" for k in SASL_KEYS), f"{name}: {values}"


def test_plaintext_clients_build_no_sasl_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from streaming.settings import KafkaSettings

    for key in [k for k in os.environ if k.startswith("KAFKA_")]:
        monkeypatch.delenv(key)
    for key, value in rendered(services(KAFKA_FILE)["consumer"], {}).items():
        monkeypatch.setenv(key, value)
    config = KafkaSettings().client_config()
    assert config["security.protocol"] == "PLAINTEXT"
    assert not {"sasl.mechanism", "sasl.username", "ssl.ca.location"} & set(config)


def test_airflow_connections_and_kafka_ui_log_in_as_their_principals(tmp_path: Path) -> None:
    scram = _scram_stack(tmp_path)
    scheduler = services(AIRFLOW_FILE)["airflow-scheduler"]
    watcher_keys = {"group.id", "enable.auto.commit", "auto.offset.reset"}
    for conn in ("AIRFLOW_CONN_SMART_ACCESS_KAFKA", "AIRFLOW_CONN_SMART_ACCESS_KAFKA_DLQ_WATCHER"):
        extra = json.loads(
            rendered(scheduler, run_env(AIRFLOW_FILE, CLUSTER_ENV | SCRAM_ENV))[conn]
        )["extra"]
        client = {k: v for k, v in extra.items() if k not in watcher_keys}
        assert client == scram.kafka_client("airflow"), conn
        plain = json.loads(rendered(scheduler, run_env(AIRFLOW_FILE, {}))[conn])["extra"]
        assert {k: v for k, v in plain.items() if k not in watcher_keys} == {
            "bootstrap.servers": "kafka:19092",
            "sasl.password": "kafka-airflow",  # ignored without a mechanism
        }, conn
    ui = services(KAFKA_FILE)["kafka-ui"]
    values = rendered(ui, SCRAM_ENV)
    assert values["KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert values["KAFKA_CLUSTERS_0_PROPERTIES_SASL_MECHANISM"] == "SCRAM-SHA-512"
    jaas = values["KAFKA_CLUSTERS_0_PROPERTIES_SASL_JAAS_CONFIG"]
    assert 'username="smart-access-inspector" password="kafka-inspector"' in jaas
    assert values["KAFKA_CLUSTERS_0_PROPERTIES_SSL_TRUSTSTORE_LOCATION"] == CA
    assert f"kafka-tls:{SECRETS}:ro" in ui["volumes"]
    plain = rendered(ui, {})
    assert plain["KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert plain["KAFKA_CLUSTERS_0_PROPERTIES_SASL_MECHANISM"] == ""
    shared = load(AIRFLOW_FILE)["volumes"]["kafka-tls"]
    assert shared == {"name": load(KAFKA_FILE)["volumes"]["kafka-tls"]["name"], "external": True}


def test_host_ports_are_the_contract_ports_with_the_stack_defaults() -> None:
    published = {
        (n, host) for path in COMPOSE_FILES for n, host, _ in host_ports(path, {}, profiles=())
    }
    assert published == CONTRACT_HOST_PORTS
    # the cluster adds one port per broker, as the embedded cluster's (KAFKA_PORT + 100*i)
    cluster = {(n, h) for n, h, _ in host_ports(KAFKA_FILE, {}, profiles=("cluster",))}
    assert cluster - published == {("kafka-2", 9192), ("kafka-3", 9292)}
    defaults = StackConfig.from_env({})
    assert ("kafka", defaults.kafka_port) in published
    assert ("postgres", defaults.pg_port) in published
    if hasattr(defaults, "airflow_port"):
        assert ("airflow-api-server", defaults.airflow_port) in published
    overridden = {
        "PGPORT": "15432",
        "KAFKA_PORT": "19092",
        "KAFKA_2_PORT": "19192",
        "KAFKA_3_PORT": "19292",
        "AIRFLOW_PORT": "18080",
        "KAFKA_UI_PORT": "18090",
        "DASHBOARD_PORT": "18501",
    }
    moved = {host for path in COMPOSE_FILES for _, host, _ in host_ports(path, overridden)}
    assert moved == {int(v) for v in overridden.values()}, "each port is overridable"


def test_databases_and_roles_are_the_embedded_stacks() -> None:
    airflow = services(AIRFLOW_FILE)
    postgres = environment(airflow["postgres"])
    assert postgres["POSTGRES_DB"] == DATABASE == "smart_access"
    init_scripts = sorted((ROOT / "deploy" / "postgres-init").glob("*.sh"))
    assert init_scripts and all(os.access(p, os.X_OK) for p in init_scripts)
    init = "\n".join(p.read_text() for p in init_scripts)
    assert re.search(
        rf"^create database {AIRFLOW_DATABASE} owner {METADATA_ROLE};", init, re.M | re.I
    ), init
    assert re.search(rf"^create role {METADATA_ROLE} login password :'password';", init, re.M)
    assert "AIRFLOW_METADATA_PASSWORD" in environment(airflow["postgres"])
    metadata = urlsplit(
        interpolate(
            environment(airflow["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
            env_values(),
        )
    )
    assert (metadata.username, metadata.hostname, metadata.path) == (
        METADATA_ROLE,
        "postgres",
        f"/{AIRFLOW_DATABASE}",
    )
    roles = {
        (KAFKA_FILE, "consumer"): "smart_access_loader",
        (AIRFLOW_FILE, "airflow-scheduler"): "smart_access_transformer",
        (AIRFLOW_FILE, "dashboard"): "smart_access_analyst",
    }
    for (path, name), role in roles.items():
        env = environment(services(path)[name])
        assert (env["PGHOST"], env["PGDATABASE"], env["PGUSER"]) == ("postgres", DATABASE, role)
        assert interpolate(env["PGPASSWORD"], {}) == DEFAULT_ROLE_PASSWORDS[role]
    tasks = urlsplit(
        interpolate(
            environment(airflow["airflow-scheduler"])["AIRFLOW_CONN_SMART_ACCESS_POSTGRES"], {}
        )
    )
    assert (tasks.username, tasks.hostname, tasks.path) == (
        "smart_access_transformer",
        "postgres",
        f"/{DATABASE}",
    )


def test_migrations_run_before_anything_uses_the_warehouse() -> None:
    airflow = services(AIRFLOW_FILE)
    migrate = airflow["migrate"]
    assert migrate["command"] == ["python", "-m", "stack", "migrate"]
    env = environment(migrate)
    assert env["PGHOST"] == "postgres" and env["PGUSER"] == "postgres"
    for role in DEFAULT_ROLE_PASSWORDS:
        assert f"{role.upper()}_PASSWORD" in env, f"migrate sets no password for {role}"
    assert "COPY stack/ stack/" in (ROOT / "deploy" / "Dockerfile").read_text()
    for name in ("airflow-api-server", "airflow-scheduler", "dashboard"):
        depends = airflow[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_airflow_components_share_settings_and_secrets() -> None:
    airflow = services(AIRFLOW_FILE)
    components = ["airflow-api-server", "airflow-scheduler", "airflow-dag-processor"]
    components += ["airflow-triggerer", "airflow-init"]
    commands = {name: airflow[name]["command"] for name in components[:4]}
    assert commands == dict(
        zip(components[:4], ["api-server", "scheduler", "dag-processor", "triggerer"], strict=True)
    )
    shared = (
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    )
    for key in shared:
        values = {environment(airflow[name]).get(key) for name in components}
        assert len(values) == 1 and None not in values, f"{key} differs between components"
    url = environment(airflow["airflow-scheduler"])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert urlsplit(url).hostname == "airflow-api-server"
    for name in components:
        assert airflow[name]["env_file"] == [".env.airflow"], name
        mounts = {v.split(":")[1] for v in airflow[name]["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/dbt_project"} <= mounts
    init = airflow["airflow-init"]
    script = init["command"][-1]
    assert "airflow db migrate" in script
    # the FAB auth manager's two logins, as in the embedded stack
    for role, variable in (("Admin", "WWW_USER"), ("Viewer", "VIEWER")):
        login = (
            f'airflow users create --role {role} --username "$${{_AIRFLOW_{variable}_USERNAME}}"'
        )
        assert login in script, login
    assert env_values()["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".FabAuthManager")
    logins = {"_AIRFLOW_WWW_USER_USERNAME", "_AIRFLOW_WWW_USER_PASSWORD"}
    logins |= {"_AIRFLOW_VIEWER_USERNAME", "_AIRFLOW_VIEWER_PASSWORD"}
    assert logins <= set(environment(init))


def test_versions_equal_the_pins_of_the_embedded_stack() -> None:
    pom = ET.parse(ROOT / "stack" / "kafka-jars" / "pom.xml")  # noqa: S314 - our own file
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    kafka_version = pom.find("m:properties/m:kafka.version", ns)
    assert kafka_version is not None
    assert services(KAFKA_FILE)["kafka"]["image"] == f"apache/kafka:{kafka_version.text}"

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pin = next(d for d in project["dependencies"] if d.startswith("apache-airflow=="))
    airflow_version = pin.split("==", 1)[1]
    python = re.search(r">=\s*(\d+\.\d+)", project["requires-python"])
    assert python is not None
    base = re.search(
        r"^FROM (apache/airflow:\S+)\s*$",
        (ROOT / "deploy" / "airflow.Dockerfile").read_text(),
        re.M,
    )
    assert base is not None
    assert base.group(1) == f"apache/airflow:{airflow_version}-python{python.group(1)}"
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    assert locked["apache-airflow"] == airflow_version
    app = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"FROM python:{python.group(1)}-" in app
    assert "uv sync --frozen --no-dev" in app


def test_dag_id_and_how_to_enable_it() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Run with Docker", 1)
    assert len(section) == 2, "README has no 'Run with Docker' section"
    docker = section[1].split("\n## ", 1)[0]
    for command in (
        "docker compose -f docker-compose.kafka.yml up -d",
        "docker compose -f docker-compose.airflow.yml --env-file .env.airflow up -d",
    ):
        assert command in docker
    unpause = re.search(r"airflow dags unpause (\S+)", docker)
    assert unpause and unpause.group(1) == DAG_ID
    for url in ("http://localhost:8080", "http://localhost:8090", "http://localhost:8501"):
        assert url in docker
    dags = require("dags")
    declared = {
        match
        for path in dags.glob("*.py")
        for match in re.findall(r"""dag_id\s*=\s*["']([\w.-]+)["']""", path.read_text())
        + re.findall(r"""^DAG_ID\s*=\s*["']([\w.-]+)["']""", path.read_text(), re.M)
        + re.findall(r"@dag\([^)]*\)\s*def\s+(\w+)", path.read_text(), re.S)
    }
    assert DAG_ID in declared, f"no DAG {DAG_ID} in dags/ (found {sorted(declared)})"


def test_simulator_and_consumer_run_as_in_the_embedded_stack(tmp_path: Path) -> None:
    from stack.services import services as stack_services

    config = StackConfig.from_env(
        {
            "SMART_ACCESS_STACK_DIR": str(tmp_path),
            "PGHOST": "postgres",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka:19092",
            "SMART_ACCESS_AIRFLOW": "off",
        }
    )
    native = {
        svc.command[2]: svc.command[3:]
        for svc in stack_services(config)
        if svc.command[1:2] == ["-m"]
    }
    compose = {
        svc["command"][2]: svc["command"][3:]
        for svc in services(KAFKA_FILE).values()
        if svc.get("command", [None])[:2] == ["python", "-m"]
    }
    for module in ("streaming.producer", "streaming.consumer"):
        assert module in native, f"{module} is not an embedded-stack service"
        assert compose[module] == native[module], f"{module} runs with other flags"


def test_consumer_health_asks_the_consumer_group() -> None:
    consumer = services(KAFKA_FILE)["consumer"]
    assert consumer["command"] == [
        "python",
        "-m",
        "streaming.consumer",
        "--metrics-port",
        "9464",
    ]
    assert consumer["healthcheck"]["test"][1:] == ["python", "-m", "deploy.healthcheck", "consumer"]
    from deploy.healthcheck import build_parser

    assert build_parser().parse_args(["consumer"]).group == CONSUMER_GROUP


@pytest.mark.skipif(
    shutil.which("unshare") is None,
    reason="waits for util-linux's unshare (apt-get install util-linux) to cut the network",
)
def test_validation_needs_no_network() -> None:
    """Run the validator in a namespace without any network interface."""
    tool = Path(sys.executable).parent / "check-jsonschema"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(
            "waits for permission to create a network namespace (`unshare -n`: run as root,"
            " or enable unprivileged user namespaces); the offline schema check needs one"
        )
    result = subprocess.run(
        ["unshare", "-n", str(tool), "--builtin-schema", "vendor.compose-spec", str(KAFKA_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
