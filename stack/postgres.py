"""The embedded PostgreSQL server: binaries, data directory, process, readiness."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import psycopg2

from stack.config import StackError

logger = logging.getLogger(__name__)

PG_SERVICE_USER = "postgres"


def running_as_root() -> bool:
    return os.geteuid() == 0


def find_bindir() -> Path | None:
    """The newest PostgreSQL server bin folder on this machine, if any."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def ensure_binaries() -> Path:
    """Return the server bin folder, installing Debian's `postgresql` if it is missing."""
    bindir = find_bindir()
    if bindir:
        return bindir
    if not running_as_root() or not shutil.which("apt-get"):
        raise StackError(
            "PostgreSQL server binaries not found; install them "
            "(sudo apt-get install -y postgresql) or point PGHOST at your own server"
        )
    logger.info("PostgreSQL server binaries missing: installing Debian's postgresql package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise StackError(f"{' '.join(cmd)} failed: {' '.join(tail)}")
    bindir = find_bindir()
    if not bindir:
        raise StackError("apt-get installed postgresql but no server binary was found")
    return bindir


def service_user() -> str | None:
    """The OS user the server runs as: `postgres` under root (initdb refuses root)."""
    return PG_SERVICE_USER if running_as_root() else None


def _hand_to_service_user(path: Path) -> None:
    if running_as_root():
        entry = pwd.getpwnam(PG_SERVICE_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def check_reachable(path: Path) -> None:
    """As root the server runs as `postgres`: every parent folder must let it through."""
    if not running_as_root():
        return
    probe = subprocess.run(
        ["runuser", "-u", PG_SERVICE_USER, "--", "test", "-x", str(path)], check=False
    )
    if probe.returncode != 0:
        raise StackError(
            f"the postgres OS user cannot reach {path}; make its parent folders "
            "world-executable (chmod o+x) or set SMART_ACCESS_STACK_DIR to a folder under /tmp"
        )


def initdb(bindir: Path, data_dir: Path, admin_user: str, admin_password: str) -> bool:
    """Create the cluster once; returns True when it was created now."""
    if (data_dir / "PG_VERSION").exists():
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    _hand_to_service_user(data_dir.parent)
    _hand_to_service_user(data_dir)
    data_dir.chmod(0o700)
    check_reachable(data_dir.parent)
    pwfile = data_dir.parent / ".initdb-pw"
    pwfile.write_text(admin_password + "\n")
    _hand_to_service_user(pwfile)
    try:
        result = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                admin_user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            user=service_user(),
            cwd="/",
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise StackError(f"initdb failed: {result.stderr.strip().splitlines()[-1:]}")
    return True


def server_command(bindir: Path, data_dir: Path, port: int) -> list[str]:
    """The foreground server process (supervisord or a fixture owns it)."""
    return [
        str(bindir / "postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=256MB",
        "-c",
        "wal_compression=on",
        "-c",
        "max_wal_size=2GB",
        "-c",
        "logging_collector=off",
        "-c",
        "log_min_messages=warning",
    ]


def wait_ready(
    dsn: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"PostgreSQL exited with code {proc.returncode} while starting")
        try:
            psycopg2.connect(dsn).close()
            return
        except psycopg2.OperationalError as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            if "password authentication failed" in last:
                raise StackError(
                    f"PostgreSQL rejected the password: {last}; check PGUSER/PGPASSWORD"
                ) from None
        time.sleep(0.2)
    raise StackError(f"PostgreSQL not ready after {timeout:.0f}s: {last}")


def ensure_database(admin_dsn_postgres: str, name: str) -> None:
    conn = psycopg2.connect(admin_dsn_postgres)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'create database "{name}"')
    finally:
        conn.close()
