"""The Docker Compose path, checked offline: no Docker, no services.

Both compose files validate against the Compose Specification; their references
hold (depends_on, variables, ports, healthchecks, what the Dockerfiles copy); and
they describe the same platform as `make up`: topics, databases, roles, ports, the
DAG, and the Kafka and Airflow versions pinned for the embedded stack.
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
from stack.kafka import server_properties
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


def host_ports(path: Path, env: dict[str, str]) -> list[tuple[str, int, int]]:
    """(service, host port, container port) of every published port."""
    published = []
    for name, service in services(path).items():
        for entry in service.get("ports", []):
            assert isinstance(entry, str), f"{name}: use the short 'HOST:CONTAINER' form"
            host, container = interpolate(entry, env).rsplit(":", 1)
            published.append((name, int(host.rsplit(":", 1)[-1]), int(container)))
    return published


def one_shots(data: dict[str, Any]) -> set[str]:
    return {name for name, svc in data["services"].items() if svc.get("restart") == "no"}


def kafka_env() -> dict[str, str]:
    return environment(services(KAFKA_FILE)["kafka"])


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


def test_kafka_file_starts_without_an_env_file() -> None:
    for name, ops in references(KAFKA_FILE).items():
        assert ops <= {":-", "-"}, f"{name} needs a default in docker-compose.kafka.yml"


def test_every_airflow_variable_is_defined_or_has_a_default() -> None:
    defined = env_values()
    for name, ops in references(AIRFLOW_FILE).items():
        if ops <= {":-", "-"}:
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
    for env in ({}, env_values()):
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


def test_topic_init_creates_the_topics_of_streaming_topics() -> None:
    init = services(KAFKA_FILE)["topic-init"]
    assert init["build"]["dockerfile"] == "deploy/Dockerfile"
    assert init["command"][:3] == ["python", "-m", "deploy.create_topics"]
    assert "COPY streaming/ streaming/" in (ROOT / "deploy" / "Dockerfile").read_text()
    result = subprocess.run(
        [sys.executable, "-m", "deploy.create_topics", "--plan"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    plan = json.loads(result.stdout)
    assert plan == [
        {"name": s.name, "partitions": s.partitions, "config": s.config} for s in TOPICS
    ]
    assert {t["name"] for t in plan} == {
        "smart-access.events",
        "smart-access.health",
        "smart-access.devices",
        "smart-access.dlq",
    }
    for service in ("producer", "consumer"):
        depends = services(KAFKA_FILE)[service]["depends_on"]
        assert depends["topic-init"]["condition"] == "service_completed_successfully"


def test_broker_settings_equal_the_embedded_broker() -> None:
    embedded = dict(
        line.split("=", 1)
        for line in server_properties(Path("/data"), 9092, 9093).splitlines()
        if line and not line.startswith("#")
    )
    env = kafka_env()
    for key, value in embedded.items():
        if "listener" in key or key in {"log.dirs", "controller.quorum.voters"}:
            continue  # where the broker listens differs by design
        variable = "KAFKA_" + key.upper().replace(".", "_")
        assert env.get(variable) == value, f"{variable} differs from {key}={value}"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID: a UUID"


def test_kafka_listeners_serve_containers_and_the_host() -> None:
    env = kafka_env()
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) == set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    advertised = dict(
        item.split("://", 1)
        for item in interpolate(env["KAFKA_ADVERTISED_LISTENERS"], {}).split(",")
    )
    assert advertised["HOST"] == "localhost:9092"
    assert listeners["HOST"] == ":9092"
    assert ("kafka", 9092, 9092) in host_ports(KAFKA_FILE, {})
    moved = dict(
        item.split("://", 1)
        for item in interpolate(env["KAFKA_ADVERTISED_LISTENERS"], {"KAFKA_PORT": "19093"}).split(
            ","
        )
    )
    assert moved["HOST"] == "localhost:19093", "the advertised port follows KAFKA_PORT"
    health = " ".join(services(KAFKA_FILE)["kafka"]["healthcheck"]["test"])
    assert "kafka-broker-api-versions.sh" in health and internal_bootstrap() in health


def test_every_client_uses_the_internal_listener() -> None:
    bootstrap = internal_bootstrap()
    assert bootstrap == "kafka:19092"
    seen = 0
    for path in COMPOSE_FILES:
        for name, service in services(path).items():
            env = environment(service)
            if "KAFKA_BOOTSTRAP_SERVERS" in env:
                assert env["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap, name
                seen += 1
    assert seen >= 4  # topic-init, producer, consumer, dashboard (+ Airflow)
    ui = environment(services(KAFKA_FILE)["kafka-ui"])
    assert ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == bootstrap
    conn = json.loads(
        environment(services(AIRFLOW_FILE)["airflow-scheduler"])["AIRFLOW_CONN_SMART_ACCESS_KAFKA"]
    )
    assert conn == {"conn_type": "kafka", "extra": {"bootstrap.servers": bootstrap}}


def test_host_ports_are_the_contract_ports_with_the_stack_defaults() -> None:
    published = {(n, host) for path in COMPOSE_FILES for n, host, _ in host_ports(path, {})}
    assert published == CONTRACT_HOST_PORTS
    defaults = StackConfig.from_env({})
    assert ("kafka", defaults.kafka_port) in published
    assert ("postgres", defaults.pg_port) in published
    if hasattr(defaults, "airflow_port"):
        assert ("airflow-api-server", defaults.airflow_port) in published
    overridden = {
        "PGPORT": "15432",
        "KAFKA_PORT": "19092",
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
    assert consumer["command"] == ["python", "-m", "streaming.consumer", "--metrics-port", "9464"]
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
