"""Throw-away PostgreSQL and Kafka servers on free ports in temporary folders.

Used by the test fixtures and the benchmarks: never the user's running stack.
Each handle can stop, start and restart its server to simulate outages.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from stack import kafka, postgres
from stack.config import DATABASE, DEFAULT_ROLE_PASSWORDS
from stack.migrate import apply_migrations

ADMIN_USER = "postgres"
ADMIN_PASSWORD = "postgres"  # noqa: S105 - throw-away test cluster on loopback


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Every port variable of the embedded stack (stack.config): a whole stack on free ports.
STACK_PORT_VARIABLES = (
    "PGPORT",
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "AIRFLOW_PORT",
    "DASHBOARD_PORT",
    "KAFKA_UI_PORT",
    "CONSUMER_METRICS_PORT",
    "SIMULATOR_METRICS_PORT",
    "PROMETHEUS_PORT",
    "ALERTMANAGER_PORT",
    "KAFKA_METRICS_PORT",
    "POSTGRES_EXPORTER_PORT",
    "NODE_EXPORTER_PORT",
    "AIRFLOW_STATSD_PORT",
    "STATSD_EXPORTER_PORT",
)


def free_stack_ports() -> dict[str, str]:
    """A free port for each of the embedded stack's port variables."""
    return {name: str(free_port()) for name in STACK_PORT_VARIABLES}


def make_tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # the postgres OS user must reach the data directory
    return path


@dataclass
class EphemeralPostgres:
    root: Path
    port: int
    bindir: Path
    proc: subprocess.Popen[bytes] | None = None
    role_passwords: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLE_PASSWORDS))

    @classmethod
    def create(cls) -> EphemeralPostgres:
        bindir = postgres.ensure_binaries()
        root = make_tempdir("smart-access-pg-")
        server = cls(root=root, port=free_port(), bindir=bindir)
        postgres.initdb(bindir, server.data_dir, ADMIN_USER, ADMIN_PASSWORD)
        server.start()
        postgres.ensure_database(server.dsn("postgres"), DATABASE)
        postgres.ensure_database(server.dsn("postgres"), "airflow")
        apply_migrations(server.dsn(), server.role_passwords)
        return server

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def dsn(
        self, database: str = DATABASE, user: str = ADMIN_USER, password: str | None = None
    ) -> str:
        if password is None:
            password = ADMIN_PASSWORD if user == ADMIN_USER else self.role_passwords[user]
        return (
            f"host=127.0.0.1 port={self.port} user={user} password={password} "
            f"dbname={database} connect_timeout=5"
        )

    def env(self, user: str = ADMIN_USER) -> dict[str, str]:
        password = ADMIN_PASSWORD if user == ADMIN_USER else self.role_passwords[user]
        return {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": user,
            "PGPASSWORD": password,
            "PGDATABASE": DATABASE,
        }

    def start(self) -> None:
        log = (self.root / "postgres.log").open("ab")
        self.proc = subprocess.Popen(
            postgres.server_command(self.bindir, self.data_dir, self.port),
            user=postgres.service_user(),
            cwd="/",
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        postgres.wait_ready(self.dsn("postgres"), proc=self.proc)

    def stop(self, mode: signal.Signals = signal.SIGINT) -> None:
        """SIGINT is a fast shutdown; SIGQUIT an immediate one (crash-like)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(mode)
            self.proc.wait(timeout=60)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class EphemeralKafka:
    root: Path
    port: int
    controller_port: int
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, create_topics: bool = True) -> EphemeralKafka:
        kafka.ensure_jars()
        broker = cls(
            root=make_tempdir("smart-access-kafka-"), port=free_port(), controller_port=free_port()
        )
        kafka.prepare(broker.root, broker.port, broker.controller_port)
        broker.start()
        if create_topics:
            from streaming.topics import ensure_topics

            ensure_topics(broker.client_config())
        return broker

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap}

    def start(self) -> None:
        log = (self.root / "kafka.log").open("ab")
        self.proc = subprocess.Popen(
            kafka.server_command(self.root), stdout=log, stderr=subprocess.STDOUT
        )
        kafka.wait_ready(self.bootstrap, proc=self.proc)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class EphemeralKafkaCluster:
    """Several KRaft nodes (each a broker and a controller) on free ports, optionally
    with SCRAM over TLS and the platform's ACLs (`auth="scram"`)."""

    root: Path
    nodes: list[kafka.KafkaNode]
    auth: str = "none"
    passwords: dict[str, str] = field(default_factory=dict)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def create(
        cls, brokers: int = 3, auth: str = "none", create_topics: bool = True
    ) -> EphemeralKafkaCluster:
        from streaming import principals

        kafka.ensure_jars()
        root = make_tempdir("smart-access-kafka-cluster-")
        ports = [free_port() for _ in range(2 * brokers)]
        passwords = principals.passwords({})
        nodes = [  # free ports are not evenly spaced: each node gets its own pair
            kafka.KafkaNode(i + 1, ports[2 * i], ports[2 * i + 1], root / f"node-{i + 1}")
            for i in range(brokers)
        ]
        kafka.prepare_nodes(root, nodes, auth=auth, admin_password=passwords["admin"])
        cluster = cls(root=root, nodes=nodes, auth=auth, passwords=passwords)
        for node in nodes:
            cluster.start_node(node.node_id, wait=False)
        kafka.wait_ready(cluster.bootstrap, client=cluster.client_config(), brokers=brokers)
        if create_topics:
            from streaming.topics import ensure_topics

            ensure_topics(cluster.client_config())
        if auth == "scram":
            principals.ensure_principals(cluster.client_config(), passwords)
        return cluster

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    @property
    def ca_cert(self) -> Path:
        return self.root / "tls" / "ca.crt"

    def client_config(self, role: str = "admin") -> dict[str, str]:
        """librdkafka settings logging in as `role` (with auth), or plaintext."""
        from streaming import principals

        password = self.passwords[role] if self.auth == "scram" else None
        return principals.client_config(self.bootstrap, role, password, str(self.ca_cert))

    def env(self, role: str = "admin") -> dict[str, str]:
        """KAFKA_* variables for a platform process logging in as `role`."""
        from streaming import principals

        return principals.client_env(self.client_config(role), role)

    def node(self, node_id: int) -> kafka.KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def start_node(self, node_id: int, wait: bool = True) -> None:
        node = self.node(node_id)
        log = (node.directory / "kafka.log").open("ab")
        self.procs[node_id] = subprocess.Popen(
            kafka.server_command(node.directory), stdout=log, stderr=subprocess.STDOUT
        )
        if wait:
            kafka.wait_ready(
                f"127.0.0.1:{node.port}",
                client={**self.client_config(), "bootstrap.servers": f"127.0.0.1:{node.port}"},
                proc=self.procs[node_id],
            )

    def stop_node(self, node_id: int, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM is a controlled shutdown (leaders move first); SIGKILL a crash."""
        proc = self.procs.pop(node_id, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def destroy(self) -> None:
        for node_id in list(self.procs):
            self.stop_node(node_id, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
