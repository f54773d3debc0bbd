"""The Prometheus exporters of the embedded stack, each on 127.0.0.1.

- Kafka: Prometheus' JMX exporter as a java agent of the broker (stack/kafka.py);
- PostgreSQL: Debian's `prometheus-postgres-exporter`, connected as
  `smart_access_monitor` (pg_monitor plus the two ops tables the alert rules read,
  migration 0056), with the platform's own queries (stack/prometheus/postgres_queries.yml);
- the host's filesystems (the disk-filling alert) and the one-shot jobs' last runs
  (redrive and replay write `.stack/metrics/*.prom`): Debian's
  `prometheus-node-exporter` with only its filesystem and textfile collectors;
- Airflow: its StatsD metrics (InfluxDB-style tags, so dag_id and task_id become
  labels) into Prometheus' `statsd_exporter`, built with `go install` once (Debian has
  no package), kept in stack/exporters/bin.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from stack.config import REPO_ROOT, StackConfig, StackError

__all__ = [
    "POSTGRES_QUERIES",
    "STATSD_EXPORTER",
    "ensure_statsd_exporter",
    "node_exporter_command",
    "postgres_exporter_command",
    "postgres_exporter_env",
    "statsd_exporter_command",
]

logger = logging.getLogger(__name__)

POSTGRES_QUERIES = REPO_ROOT / "stack" / "prometheus" / "postgres_queries.yml"
STATSD_EXPORTER_MODULE = "github.com/prometheus/statsd_exporter"
STATSD_EXPORTER_VERSION = "v0.31.0"
STATSD_EXPORTER = REPO_ROOT / "stack" / "exporters" / "bin" / "statsd_exporter"
MONITOR_ROLE = "smart_access_monitor"


def postgres_exporter_command(binary: str, config: StackConfig) -> list[str]:
    return [
        binary,
        f"--web.listen-address=127.0.0.1:{config.postgres_exporter_port}",
        f"--extend.query-path={POSTGRES_QUERIES}",
        "--disable-settings-metrics",
        "--log.level=warn",
    ]


def postgres_exporter_env(config: StackConfig) -> dict[str, str]:
    """The exporter reads its connection from DATA_SOURCE_NAME (libpq key=value)."""
    return {
        "DATA_SOURCE_NAME": (
            f"host={config.pg_host} port={config.pg_port} dbname=smart_access "
            f"user={MONITOR_ROLE} password={config.role_passwords[MONITOR_ROLE]} "
            "sslmode=disable connect_timeout=5 application_name=postgres_exporter"
        )
    }


def node_exporter_command(binary: str, config: StackConfig) -> list[str]:
    """Only the filesystem collector (free space of the disks the stack writes to) and
    the textfile collector (the jobs' metrics files)."""
    return [
        binary,
        f"--web.listen-address=127.0.0.1:{config.node_exporter_port}",
        "--collector.disable-defaults",
        "--collector.filesystem",
        "--collector.textfile",
        f"--collector.textfile.directory={config.metrics_dir}",
        "--log.level=warn",
    ]


def statsd_exporter_command(config: StackConfig) -> list[str]:
    return [
        str(STATSD_EXPORTER),
        f"--statsd.listen-udp=127.0.0.1:{config.statsd_port}",
        "--statsd.listen-tcp=",  # Airflow sends UDP; no TCP listener at all
        f"--web.listen-address=127.0.0.1:{config.statsd_exporter_port}",
        "--log.level=warn",
    ]


def ensure_statsd_exporter() -> Path:
    """Build Prometheus' statsd_exporter with `go install` once (~30 s)."""
    if STATSD_EXPORTER.exists():
        return STATSD_EXPORTER
    go = shutil.which("go")
    if go is None:
        raise StackError(
            "go not found on PATH: it builds the StatsD exporter for Airflow's metrics; "
            "install Go (sudo apt-get install -y golang) or run without metrics: "
            "SMART_ACCESS_PROMETHEUS=off"
        )
    logger.info("building %s@%s (first run only)", STATSD_EXPORTER_MODULE, STATSD_EXPORTER_VERSION)
    result = subprocess.run(
        [go, "install", f"{STATSD_EXPORTER_MODULE}@{STATSD_EXPORTER_VERSION}"],
        env={**os.environ, "GOBIN": str(STATSD_EXPORTER.parent), "CGO_ENABLED": "0"},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode != 0 or not STATSD_EXPORTER.exists():
        detail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
        raise StackError(f"go install of the StatsD exporter failed: {detail}")
    return STATSD_EXPORTER
