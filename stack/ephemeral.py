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
