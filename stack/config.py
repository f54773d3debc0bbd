"""Where the embedded stack keeps its files and which ports it uses.

Everything is read from the environment once, so `make up`, the test fixtures and
the supervised services agree on the same values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from streaming import principals

REPO_ROOT = Path(__file__).resolve().parent.parent
# node i of a Kafka cluster listens on KAFKA_PORT + PORT_STEP*(i-1): 9092, 9192, 9292
PORT_STEP = 100

# Local-development credentials of the embedded cluster. They only ever listen on
# 127.0.0.1; change them through the environment for anything shared.
DEFAULT_ADMIN_USER = "postgres"
DEFAULT_ADMIN_PASSWORD = "postgres"  # noqa: S105 - documented local default
DEFAULT_ROLE_PASSWORDS = {
    "smart_access_loader": "loader",
    "smart_access_transformer": "transformer",
    "smart_access_analyst": "analyst",
    "smart_access_monitor": "monitor",
}

DATABASE = "smart_access"
AIRFLOW_DATABASE = "airflow"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (created 0600, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)  # an existing file keeps its old mode through O_CREAT


def load_env_file(path: Path, environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """Read KEY=VALUE lines of `path` (a `.env`) into `environ` without overriding
    what is already set; returns the keys taken. Quotes around a value are removed;
    blank lines and # comments are skipped."""
    if not path.is_file():
        return []
    taken = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise StackError(f"{path}:{number}: expected KEY=VALUE, got {raw.strip()[:40]!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key not in environ:
            environ[key] = value
            taken.append(key)
    return taken


class StackError(RuntimeError):
    """A problem the user can fix; its message is one line saying what and how."""


def _port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a port number; set it to e.g. {default}") from None
    if not 0 < port < 65536:
        raise StackError(f"{name}={port} is outside 1-65535; set it to e.g. {default}")
    return port


def _count(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise StackError(f"{name}={raw!r} is not a positive whole number; e.g. {name}=3")
    return int(raw)


def _choice(env: dict[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in allowed:
        raise StackError(
            f"{name}={raw!r} is not one of {', '.join(allowed)}; e.g. {name}={default}"
        )
    return raw


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise StackError(f"{name}={raw!r} is not a switch; set it to on or off")


@dataclass(frozen=True)
class StackConfig:
    root: Path
    pg_port: int
    pg_external: bool
    pg_host: str
    admin_user: str
    admin_password: str
    kafka_port: int
    kafka_controller_port: int
    kafka_external: bool
    kafka_bootstrap: str
    role_passwords: dict[str, str] = field(default_factory=dict)
    airflow_port: int = 8080
    airflow_enabled: bool = True
    dashboard_port: int = 8501
    kafka_ui_port: int = 8090
    consumer_metrics_port: int = 9464
    simulator_metrics_port: int = 9465
    prometheus_port: int = 9090
    alertmanager_port: int = 9095
    prometheus_enabled: bool = True
    # exporters (every one on 127.0.0.1): Kafka's JMX agent, PostgreSQL, the host's
    # filesystems, and Airflow's StatsD (UDP in, Prometheus out)
    kafka_metrics_port: int = 9404
    postgres_exporter_port: int = 9187
    node_exporter_port: int = 9100
    statsd_port: int = 9125
    statsd_exporter_port: int = 9102
    # KAFKA_BROKERS=3: a replicated three-node cluster; KAFKA_AUTH=scram: SASL/SCRAM
    # over TLS with ACLs per principal (streaming/principals.py)
    kafka_brokers: int = 1
    kafka_auth: str = "none"
    kafka_passwords: dict[str, str] = field(default_factory=dict)
    kafka_ca_location: str | None = None
    kafka_replication_factor: int = 0  # 0: derived (see kafka_replication)
    simulator_rate: int = 50  # SIMULATOR_RATE: events per second the simulator sends

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StackConfig:
        env = dict(os.environ if env is None else env)
        root = Path(env.get("SMART_ACCESS_STACK_DIR", REPO_ROOT / ".stack")).resolve()
        kafka_port = _port(env, "KAFKA_PORT", 9092)
        brokers = _choice(env, "KAFKA_BROKERS", ("1", "3"), "1")
        auth = _choice(env, "KAFKA_AUTH", ("none", "scram"), "none")
        pg_external = bool(env.get("PGHOST"))
        kafka_external = bool(env.get("KAFKA_BOOTSTRAP_SERVERS"))
        passwords = {
            role: env.get(f"{role.upper()}_PASSWORD", default)
            for role, default in DEFAULT_ROLE_PASSWORDS.items()
        }
        return cls(
            root=root,
            pg_port=_port(env, "PGPORT", 5432),
            pg_external=pg_external,
            pg_host=env.get("PGHOST") or "127.0.0.1",
            admin_user=env.get("PGUSER") or DEFAULT_ADMIN_USER,
            admin_password=env.get("PGPASSWORD") or DEFAULT_ADMIN_PASSWORD,
            kafka_port=kafka_port,
            kafka_controller_port=_port(env, "KAFKA_CONTROLLER_PORT", kafka_port + 1),
            kafka_external=kafka_external,
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS")
            or ",".join(f"127.0.0.1:{kafka_port + PORT_STEP * i}" for i in range(int(brokers))),
            kafka_brokers=int(brokers),
            kafka_auth=auth,
            kafka_passwords=principals.passwords(env),
            kafka_ca_location=env.get("KAFKA_SSL_CA_LOCATION") or None,
            kafka_replication_factor=_count(env, "KAFKA_REPLICATION_FACTOR", 0),
            simulator_rate=_count(env, "SIMULATOR_RATE", 50),
            role_passwords=passwords,
            airflow_port=_port(env, "AIRFLOW_PORT", 8080),
            airflow_enabled=_flag(env, "SMART_ACCESS_AIRFLOW", default=True),
            dashboard_port=_port(env, "DASHBOARD_PORT", 8501),
            kafka_ui_port=_port(env, "KAFKA_UI_PORT", 8090),
            consumer_metrics_port=_port(env, "CONSUMER_METRICS_PORT", 9464),
            simulator_metrics_port=_port(env, "SIMULATOR_METRICS_PORT", 9465),
            prometheus_port=_port(env, "PROMETHEUS_PORT", 9090),
            alertmanager_port=_port(env, "ALERTMANAGER_PORT", 9095),
            prometheus_enabled=_flag(env, "SMART_ACCESS_PROMETHEUS", default=True),
            kafka_metrics_port=_port(env, "KAFKA_METRICS_PORT", 9404),
            postgres_exporter_port=_port(env, "POSTGRES_EXPORTER_PORT", 9187),
            node_exporter_port=_port(env, "NODE_EXPORTER_PORT", 9100),
            statsd_port=_port(env, "AIRFLOW_STATSD_PORT", 9125),
            statsd_exporter_port=_port(env, "STATSD_EXPORTER_PORT", 9102),
        )

    # --- folders -------------------------------------------------------------
    @property
    def pg_data(self) -> Path:
        return self.root / "postgres" / "data"

    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_libs(self) -> Path:
        return REPO_ROOT / "stack" / "kafka-jars" / "target" / "libs"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def metrics_dir(self) -> Path:
        """Where one-shot jobs (redrive, replay) leave their last run's metrics."""
        return self.root / "metrics"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    def admin_dsn(self, database: str = DATABASE) -> str:
        return (
            f"host={self.pg_host} port={self.pg_port} user={self.admin_user} "
            f"password={self.admin_password} dbname={database} connect_timeout=5"
        )

    # --- Kafka clients ---------------------------------------------------------
    @property
    def kafka_replication(self) -> int | None:
        """Replicas per topic: KAFKA_REPLICATION_FACTOR, else None: as many brokers
        as the cluster has, up to 3 (streaming.topics.ensure_topics)."""
        return self.kafka_replication_factor or None

    @property
    def kafka_tls_dir(self) -> Path:
        return self.kafka_dir / "tls"

    @property
    def kafka_ca(self) -> str:
        """The CA certificate clients trust: the user's for an external cluster, the
        one `make up` made otherwise."""
        if self.kafka_ca_location or self.kafka_external:
            return self.kafka_ca_location or ""
        return str(self.kafka_tls_dir / "ca.crt")

    def kafka_env(self, role: str) -> dict[str, str]:
        """KAFKA_* variables for a client logging in as `role` (streaming/principals.py)."""
        return principals.client_env(self.kafka_client(role), role)

    def kafka_client(self, role: str) -> dict[str, str]:
        """librdkafka settings for a client logging in as `role`."""
        password = self.kafka_passwords[role] if self.kafka_auth == "scram" else None
        return principals.client_config(self.kafka_bootstrap, role, password, self.kafka_ca)

    def role_env(self, role: str) -> dict[str, str]:
        """libpq variables for a service that connects as one of the platform roles."""
        return {
            "PGHOST": self.pg_host,
            "PGPORT": str(self.pg_port),
            "PGDATABASE": DATABASE,
            "PGUSER": role,
            "PGPASSWORD": self.role_passwords[role],
        }
