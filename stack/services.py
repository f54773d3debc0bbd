"""The supervised services of the embedded stack.

Adding a service is one `Service(...)` entry in `services()`: supervisord keeps it
up, restarts it when it crashes and writes its log to `.stack/logs/<name>.log`.
Infrastructure (`stage="infra"`) starts first; applications start once PostgreSQL
is migrated and the topics exist.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stack import airflow, exporters, kafka, postgres, prometheus
from stack.config import REPO_ROOT, StackConfig


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    description: str
    port: int | None = None
    stage: Literal["infra", "app"] = "app"
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stopsignal: str = "TERM"
    stopwaitsecs: int = 30
    startsecs: int = 3


def services(config: StackConfig) -> list[Service]:
    found: list[Service] = []
    if not config.pg_external:
        bindir = postgres.find_bindir()
        if bindir is not None:
            found.append(
                Service(
                    name="postgres",
                    description="PostgreSQL",
                    command=postgres.server_command(bindir, config.pg_data, config.pg_port),
                    port=config.pg_port,
                    stage="infra",
                    user=postgres.PG_SERVICE_USER if postgres.running_as_root() else None,
                    stopsignal="INT",  # fast shutdown: do not wait for clients to leave
                    stopwaitsecs=60,
                )
            )
    if not config.kafka_external:
        found += kafka_services(config)
    if config.airflow_enabled:
        found += airflow_services(config)
    # Applications: the sink connects as the least-privileged loader role.
    found.append(
        Service(
            name="consumer",
            description="Kafka -> PostgreSQL sink (exactly once)",
            command=[
                sys.executable,
                "-m",
                "streaming.consumer",
                "--metrics-port",
                str(config.consumer_metrics_port),
                # dynamic membership: with --instance-id a session lost while the group
                # coordinator moves (a broker dies) ends in a fatal fencing error
            ],
            port=config.consumer_metrics_port,  # Prometheus metrics, 127.0.0.1 only
            env={**config.role_env("smart_access_loader"), **config.kafka_env("consumer")},
            stopwaitsecs=30,
        )
    )
    found.append(
        Service(
            name="simulator",
            description=f"device simulator (~{config.simulator_rate} events/s)",
            command=[
                sys.executable,
                "-m",
                "streaming.producer",
                "--rate",
                str(config.simulator_rate),
                "--invalid-ratio",
                "0.002",
                "--duplicate-ratio",
                "0.005",
                "--late-ratio",
                "0.01",
                "--max-lateness",
                "7200",
                "--metrics-port",
                str(config.simulator_metrics_port),
            ],
            port=config.simulator_metrics_port,  # Prometheus metrics, 127.0.0.1 only
            env=config.kafka_env("simulator"),
            stopwaitsecs=30,
        )
    )
    found += streamlit_services(config)
    if config.prometheus_enabled:  # `make up` installs the binary before it starts
        binary = prometheus.find_binary() or "/usr/bin/prometheus"
        found.append(
            Service(
                name="prometheus",
                description="Prometheus with the platform's alert rules",
                command=prometheus.server_command(binary, config),
                port=config.prometheus_port,
                stopwaitsecs=30,
            )
        )
        found.append(
            Service(
                name="alertmanager",
                description="Alertmanager: alerts to SMART_ACCESS_ALERT_WEBHOOK_URL",
                command=prometheus.alertmanager_command(
                    prometheus.find_binary("prometheus-alertmanager")
                    or "/usr/bin/prometheus-alertmanager",
                    config,
                ),
                port=config.alertmanager_port,
                stopwaitsecs=30,
            )
        )
        found += exporter_services(config)
    return found


def kafka_node_name(config: StackConfig, node_id: int) -> str:
    return "kafka" if config.kafka_brokers == 1 else f"kafka-{node_id}"


def kafka_services(config: StackConfig) -> list[Service]:
    """One supervised KRaft node per broker: `kafka`, or `kafka-1`..`kafka-3`."""
    return [
        Service(
            name=kafka_node_name(config, node.node_id),
            description="Apache Kafka (KRaft)"
            + (
                f", node {node.node_id} of {config.kafka_brokers}"
                if config.kafka_brokers > 1
                else ""
            ),
            command=kafka.server_command(
                node.directory,
                config.kafka_metrics_port + node.node_id - 1 if config.prometheus_enabled else None,
            ),
            port=node.port,
            stage="infra",
            stopwaitsecs=60,
        )
        for node in kafka.cluster_nodes(
            config.kafka_dir, config.kafka_brokers, config.kafka_port, config.kafka_controller_port
        )
    ]


def exporter_services(config: StackConfig) -> list[Service]:
    """PostgreSQL's, the filesystems' and (with Airflow) StatsD's exporters; Kafka's
    is the broker's java agent. `make up` installs the binaries before it starts."""
    found = [
        Service(
            name="postgres-exporter",
            description="Prometheus exporter for PostgreSQL (as smart_access_monitor)",
            command=exporters.postgres_exporter_command(
                prometheus.find_binary("prometheus-postgres-exporter")
                or "/usr/bin/prometheus-postgres-exporter",
                config,
            ),
            port=config.postgres_exporter_port,
            env=exporters.postgres_exporter_env(config),
        ),
        Service(
            name="node-exporter",
            description="Prometheus exporter for the host's filesystems",
            command=exporters.node_exporter_command(
                prometheus.find_binary("prometheus-node-exporter")
                or "/usr/bin/prometheus-node-exporter",
                config,
            ),
            port=config.node_exporter_port,
        ),
    ]
    if config.airflow_enabled:
        found.append(
            Service(
                name="statsd-exporter",
                description="Airflow's StatsD metrics for Prometheus",
                command=exporters.statsd_exporter_command(config),
                port=config.statsd_exporter_port,
            )
        )
    return found


# Airflow's four processes. api-server on loopback only; LocalExecutor with a
# parallelism of 4 keeps the idle footprint near 0.9 GiB instead of spawning 32
# workers. The supervisor stops them with TERM and waits for running tasks.
# The scheduler and triggerer would also serve their logs on every interface (8793,
# 8794); the api-server reads the same log folder on this machine, so they do not.
_AIRFLOW_PROCESSES = (
    ("airflow-api-server", "Airflow API server and UI", ["api-server"]),
    ("airflow-scheduler", "Airflow scheduler (LocalExecutor)", ["scheduler", "--skip-serve-logs"]),
    ("airflow-dag-processor", "Airflow DAG processor", ["dag-processor"]),
    ("airflow-triggerer", "Airflow triggerer", ["triggerer", "--skip-serve-logs"]),
)


def airflow_services(config: StackConfig) -> list[Service]:
    binary = str(Path(sys.executable).parent / "airflow")
    env = airflow.airflow_env(config, dict(os.environ))
    return [
        Service(
            name=name,
            description=description,
            command=[binary, *args],
            port=config.airflow_port if name == "airflow-api-server" else None,
            env=env,
            stopwaitsecs=60,
            startsecs=5,
        )
        for name, description, args in _AIRFLOW_PROCESSES
    ]


def streamlit_command(script: str, port: int) -> list[str]:
    """`streamlit run` for a supervised app: loopback only, no browser, no telemetry."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO_ROOT / script),
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--server.fileWatcherType=none",
        "--global.developmentMode=false",
        "--client.toolbarMode=minimal",  # no "Deploy" button on an operator's dashboard
    ]


def streamlit_services(config: StackConfig) -> list[Service]:
    """The dashboard and the Kafka topic inspector, both reading as the analyst role."""
    reader = config.role_env("smart_access_analyst")
    return [
        Service(
            name="dashboard",
            description="Streamlit dashboard",
            command=streamlit_command("analytics/streamlit_app.py", config.dashboard_port),
            port=config.dashboard_port,
            env=reader,
        ),
        Service(
            name="kafka-ui",
            description="Kafka topic inspector",
            command=streamlit_command("analytics/kafka_ui/app.py", config.kafka_ui_port),
            port=config.kafka_ui_port,
            env=reader,
        ),
    ]


def service_env(config: StackConfig) -> dict[str, str]:
    """Environment every application service starts with."""
    return {
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}",
        # read-only unless a service says otherwise (the inspector's principal)
        **config.kafka_env("inspector"),
    }


def _escape(value: str) -> str:
    return value.replace("%", "%%")


def _env_value(value: str) -> str:
    """Quote a value for supervisord's `environment=` (shlex without escapes).

    JSON (a Kafka connection, say) holds double quotes: such values go in single quotes.
    """
    quote = "'" if '"' in value else '"'
    if quote in value:
        raise ValueError(f"cannot pass a value with both quote characters to supervisord: {value}")
    return f"{quote}{_escape(value)}{quote}"


def supervisord_conf(config: StackConfig, entries: list[Service]) -> str:
    run, logs = config.run_dir, config.log_dir
    lines = [
        "; generated by `python -m stack up`; edit stack/services.py instead",
        "[unix_http_server]",
        f"file={run / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={logs / 'supervisord.log'}",
        f"pidfile={run / 'supervisord.pid'}",
        f"childlogdir={logs}",
        "logfile_maxbytes=10MB",
        "loglevel=info",
        f"directory={REPO_ROOT}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run / 'supervisor.sock'}",
        "",
    ]
    base_env = service_env(config)
    for svc in entries:
        env = {**base_env, **svc.env} if svc.stage == "app" else dict(svc.env)
        lines += [
            f"[program:{svc.name}]",
            f"command={_escape(shlex.join(svc.command))}",
            f"autostart={'true' if svc.stage == 'infra' else 'false'}",
            "autorestart=true",
            f"startsecs={svc.startsecs}",
            "startretries=10",
            f"stopsignal={svc.stopsignal}",
            f"stopwaitsecs={svc.stopwaitsecs}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={logs / (svc.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
        ]
        if svc.user:
            lines.append(f"user={svc.user}")
        if env:
            rendered = ",".join(f"{k}={_env_value(v)}" for k, v in env.items())
            lines.append(f"environment={rendered}")
        lines.append("")
    return "\n".join(lines)
