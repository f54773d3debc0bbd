"""`python -m stack up|down|status|logs|wipe|migrate` — the embedded stack's controls."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from stack import airflow, exporters, kafka, postgres, prometheus
from stack.config import (
    AIRFLOW_DATABASE,
    DATABASE,
    REPO_ROOT,
    StackConfig,
    StackError,
    load_env_file,
    write_private,
)
from stack.migrate import apply_migrations
from stack.services import Service, services, supervisord_conf

logger = logging.getLogger("stack")


def _say(message: str) -> None:
    print(message, flush=True)


def _step(label: str, action: Callable[[], Any]) -> Any:
    start = time.monotonic()
    print(f"==> {label} ...", end="", flush=True)
    try:
        result = action()
    except BaseException:
        print(" failed", flush=True)
        raise
    print(f" ok ({time.monotonic() - start:.1f}s)", flush=True)
    return result


# --- supervisord ------------------------------------------------------------------


def _rpc(config: StackConfig) -> Any:
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{config.run_dir / 'supervisor.sock'}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisor_pid(config: StackConfig) -> int | None:
    pidfile = config.run_dir / "supervisord.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def process_info(config: StackConfig) -> dict[str, dict[str, Any]]:
    if supervisor_pid(config) is None:
        return {}
    try:
        return {p["name"]: p for p in _rpc(config).supervisor.getAllProcessInfo()}
    except (OSError, xmlrpc.client.Fault):
        return {}


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


_PORT_VARIABLE = {
    "postgres": "PGPORT",
    "kafka": "KAFKA_PORT",
    "kafka-1": "KAFKA_PORT",
    "kafka-2": "KAFKA_PORT",
    "kafka-3": "KAFKA_PORT",
    "airflow-api-server": "AIRFLOW_PORT",
    "dashboard": "DASHBOARD_PORT",
    "kafka-ui": "KAFKA_UI_PORT",
    "consumer": "CONSUMER_METRICS_PORT",
    "simulator": "SIMULATOR_METRICS_PORT",
    "prometheus": "PROMETHEUS_PORT",
    "alertmanager": "ALERTMANAGER_PORT",
    "postgres-exporter": "POSTGRES_EXPORTER_PORT",
    "node-exporter": "NODE_EXPORTER_PORT",
    "statsd-exporter": "STATSD_EXPORTER_PORT",
}


def _check_ports(entries: list[Service], info: dict[str, dict[str, Any]]) -> None:
    for svc in entries:
        ours = info.get(svc.name, {}).get("statename") in {"RUNNING", "STARTING", "BACKOFF"}
        if svc.port and not ours and port_in_use(svc.port):
            variable = _PORT_VARIABLE.get(svc.name, f"{svc.name.upper()}_PORT")
            raise StackError(
                f"port {svc.port} for {svc.description} is already in use; stop what listens "
                f"there or choose another port, e.g. {variable}={svc.port + 1} make up"
            )


def _wait_running(config: StackConfig, names: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = process_info(config)
        states = {n: info.get(n, {}).get("statename") for n in names}
        if all(s == "RUNNING" for s in states.values()):
            return
        failed = [n for n, s in states.items() if s == "FATAL"]
        if failed:
            raise StackError(
                f"{', '.join(failed)} failed to start; see {config.log_dir}/{failed[0]}.log"
            )
        time.sleep(0.3)
    raise StackError(f"services not running after {timeout:.0f}s: {states}")


def _wait_listening(config: StackConfig, name: str, port: int, timeout: float = 90) -> None:
    """A web app is up once its port answers (a Streamlit server takes a few seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(port):
            return
        time.sleep(0.3)
    raise StackError(
        f"{name} is not listening on {port} after {timeout:.0f}s; see {config.log_dir}/{name}.log"
    )


def _start_supervisor(config: StackConfig, entries: list[Service]) -> None:
    conf = config.root / "supervisord.conf"
    write_private(conf, supervisord_conf(config, entries))  # it holds the services' secrets
    if supervisor_pid(config) is None:
        (config.run_dir / "supervisor.sock").unlink(missing_ok=True)
        subprocess.run(
            [str(Path(sys.executable).parent / "supervisord"), "-c", str(conf)], check=True
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not process_info(config):
            time.sleep(0.2)
    else:
        # Picks up added, removed or changed programs; unchanged ones keep running.
        subprocess.run(
            [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(conf), "update"],
            check=True,
            capture_output=True,
        )


# --- commands -----------------------------------------------------------------------


def cmd_up(config: StackConfig) -> None:
    for folder in (config.root, config.log_dir, config.run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    info = process_info(config)
    if config.airflow_enabled:
        # Secrets and the login's password file must exist before the services' config.
        airflow.prepare(config, dict(os.environ))
    if not config.pg_external:
        bindir = _step("PostgreSQL server binaries", postgres.ensure_binaries)
        created = postgres.initdb(bindir, config.pg_data, config.admin_user, config.admin_password)
        if created:
            _say(f"    initialised a new cluster in {config.pg_data}")
    if not config.kafka_external:
        _step("Apache Kafka jars", kafka.ensure_jars)
        kafka.prepare(
            config.kafka_dir,
            config.kafka_port,
            config.kafka_controller_port,
            brokers=config.kafka_brokers,
            auth=config.kafka_auth,
            admin_password=config.kafka_passwords["admin"],
        )
    if config.prometheus_enabled:
        _step("Prometheus", lambda: prometheus.ensure_binary())
        _step("Alertmanager", lambda: prometheus.ensure_binary("prometheus-alertmanager"))
        _step(
            "PostgreSQL exporter",
            lambda: prometheus.ensure_binary("prometheus-postgres-exporter"),
        )
        _step("node exporter", lambda: prometheus.ensure_binary("prometheus-node-exporter"))
        if config.airflow_enabled:
            _step("StatsD exporter", exporters.ensure_statsd_exporter)
        prometheus.prepare(config, os.environ.get("SMART_ACCESS_ALERT_WEBHOOK_URL") or None)
    entries = services(config)
    _check_ports(entries, info)
    _step("supervisord", lambda: _start_supervisor(config, entries))
    infra = [s.name for s in entries if s.stage == "infra"]
    if infra:
        _rpc_start(config, infra)
        _step(f"starting {', '.join(infra)}", lambda: _wait_running(config, infra))
    _step(
        f"PostgreSQL at {config.pg_host}:{config.pg_port}",
        lambda: postgres.wait_ready(config.admin_dsn("postgres")),
    )
    for database in (DATABASE, AIRFLOW_DATABASE):
        postgres.ensure_database(config.admin_dsn("postgres"), database)
    applied = _step(
        "database migrations",
        lambda: apply_migrations(config.admin_dsn(), config.role_passwords),
    )
    if applied:
        _say(f"    applied {', '.join(applied)}")
    admin_client = config.kafka_client("admin")
    _step(
        f"Kafka at {config.kafka_bootstrap}"
        + (f" ({config.kafka_brokers} brokers)" if config.kafka_brokers > 1 else "")
        + (" with SCRAM over TLS" if config.kafka_auth == "scram" else ""),
        lambda: kafka.wait_ready(
            config.kafka_bootstrap,
            client=admin_client,
            brokers=1 if config.kafka_external else config.kafka_brokers,
        ),
    )
    from streaming.topics import ensure_topics

    created = _step(
        "topics",
        lambda: ensure_topics(admin_client, replication=config.kafka_replication),
    )
    if created:
        _say(f"    created {', '.join(created)}")
    if config.kafka_auth == "scram":
        from streaming.principals import ensure_principals

        users, added, removed = _step(
            "Kafka principals and ACLs",
            lambda: ensure_principals(admin_client, config.kafka_passwords),
        )
        if added or removed:
            _say(f"    {len(users)} principals; ACLs: {added} created, {removed} removed")
    if config.airflow_enabled:
        migrated = _step(
            "Airflow metadata database",
            lambda: airflow.migrate_metadata(config, dict(os.environ)),
        )
        if migrated:
            _say(f"    migrated to {airflow.head_revision()} (log: airflow-db-migrate.log)")
        _step("Airflow logins", lambda: airflow.ensure_logins(config, dict(os.environ)))
    apps = [s.name for s in entries if s.stage == "app"]
    if apps:
        _rpc_start(config, apps)
        _step(f"starting {', '.join(apps)}", lambda: _wait_running(config, apps, timeout=120))
    if config.airflow_enabled:
        _step(
            f"Airflow UI at 127.0.0.1:{config.airflow_port}",
            lambda: airflow.wait_healthy(config),
        )
    for name, port in (
        ("dashboard", config.dashboard_port),
        ("kafka-ui", config.kafka_ui_port),
        ("prometheus", config.prometheus_port),
        ("alertmanager", config.alertmanager_port),
    ):
        if name in apps:
            _step(
                f"{name} at http://127.0.0.1:{port}",
                functools.partial(_wait_listening, config, name, port),
            )
    if "prometheus" in apps:
        health = _step("Prometheus targets", lambda: prometheus.target_health(config))
        down = {job: state for job, state in health.items() if state != "up"}
        _say(
            f"    all {len(health)} up: {', '.join(health)}"
            if not down
            else "    warning: not up yet: "
            + "; ".join(f"{job} ({state})" for job, state in down.items())
            + " (make logs; Prometheus shows them at /targets)"
        )
    _say("")
    cmd_status(config)
    if config.airflow_enabled:
        user, password = airflow.credentials(dict(os.environ))
        viewer, viewer_password = airflow.viewer_credentials(dict(os.environ))
        _say(
            f"\nAirflow: http://127.0.0.1:{config.airflow_port}  login {user} / {password} "
            f"(admin), {viewer} / {viewer_password} (read-only); local defaults from "
            ".env.airflow: change them for anything shared"
        )
        _say(
            "  the DAGs start paused: enable smart_access_streaming_pipeline in the UI (and"
            " smart_access_alert_notifications, smart_access_dead_letter_triage if you want them)"
        )


def _rpc_start(config: StackConfig, names: list[str]) -> None:
    server = _rpc(config)
    info = process_info(config)
    for name in names:
        if info.get(name, {}).get("statename") not in {"RUNNING", "STARTING"}:
            try:
                server.supervisor.startProcess(name, False)
            except xmlrpc.client.Fault as fault:
                if "ALREADY_STARTED" not in fault.faultString:
                    raise


def stop_order(entries: list[Service]) -> list[str]:
    """Clients first, the services they use last: the simulator before the consumer
    (which lands its last batch), Airflow and the pages, then Kafka, then PostgreSQL."""
    apps = [s.name for s in entries if s.stage == "app"]
    first = [n for n in ("simulator", "consumer") if n in apps]
    infra = [s.name for s in entries if s.stage == "infra"]
    return (
        first + [n for n in apps if n not in first] + sorted(infra, key=lambda n: n == "postgres")
    )


def _stop_batches(names: list[str]) -> list[list[str]]:
    """Stop batches in order: the nodes of a Kafka cluster together (one by one, the
    last two would lose their quorum and each wait out a controlled shutdown that
    cannot finish), everything else alone."""

    def is_node(name: str) -> bool:
        return name.startswith("kafka-") and name[6:].isdigit()

    batches: list[list[str]] = []
    for name in names:
        if is_node(name) and batches and is_node(batches[-1][0]):
            batches[-1].append(name)
        else:
            batches.append([name])
    return batches


def _stop(config: StackConfig, names: list[str]) -> None:
    server = _rpc(config)
    live = {"RUNNING", "STARTING", "BACKOFF"}
    for batch in _stop_batches(names):
        info = process_info(config)
        running = [n for n in batch if info.get(n, {}).get("statename") in live]
        for name in running:
            try:
                # alone: wait for its stopwaitsecs; in a batch: all at once, then wait
                server.supervisor.stopProcess(name, len(running) == 1)
            except xmlrpc.client.Fault as fault:
                if "NOT_RUNNING" not in fault.faultString:
                    raise
        deadline = time.monotonic() + 120
        while len(running) > 1 and time.monotonic() < deadline:
            info = process_info(config)
            if not any(info.get(n, {}).get("statename") in live | {"STOPPING"} for n in running):
                break
            time.sleep(0.3)


def cmd_down(config: StackConfig) -> None:
    pid = supervisor_pid(config)
    if pid is None:
        _say("the stack is not running")
        return
    order = [n for n in stop_order(services(config)) if n in process_info(config)]
    _step(f"stopping {', '.join(order)}", lambda: _stop(config, order))

    def stop() -> None:
        try:
            _rpc(config).supervisor.shutdown()
        except (OSError, xmlrpc.client.Fault):
            os.kill(pid, 15)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.3)
        raise StackError(f"supervisord (pid {pid}) did not stop within 120s")

    _step("stopping supervisord", stop)
    _say(f"stopped; data kept in {config.root}")


_LOG_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ \w+ "
    r"(?:(?P<started>supervisord started with pid)|exited: (?P<name>[\w.-]+) \(.*not expected\))"
)
CRASH_LOOP_WINDOW = timedelta(minutes=10)
CRASH_LOOP_EXITS = 3


def unexpected_exits(log_text: str) -> dict[str, list[datetime]]:
    """When each service exited unexpectedly since supervisord last started (its log)."""
    exits: dict[str, list[datetime]] = {}
    for line in log_text.splitlines():
        match = _LOG_LINE.match(line)
        if match is None:
            continue
        if match["started"]:
            exits = {}
        else:
            at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S")
            exits.setdefault(match["name"], []).append(at)
    return exits


def describe_state(state: str, exits: list[datetime], now: datetime) -> str:
    """The supervisor's state, marked when the service keeps dying."""
    recent = [at for at in exits if now - at <= CRASH_LOOP_WINDOW]
    if state in ("BACKOFF", "FATAL") or len(recent) >= CRASH_LOOP_EXITS:
        return f"{state},crash-loop"  # one token: scripts split the table on spaces
    return state


def format_uptime(seconds: int) -> str:
    """One token: 45s, 12m05s, 3h04m, 2d03h."""
    minutes, secs = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def cmd_status(config: StackConfig) -> None:
    info = process_info(config)
    log = config.log_dir / "supervisord.log"
    exits = unexpected_exits(log.read_text(errors="replace")) if info and log.exists() else {}
    now = datetime.now()  # supervisord logs local time
    rows = [("SERVICE", "STATE", "PID", "RESTARTS", "UPTIME", "ADDRESS", "LISTENING")]  # restarts:
    # unexpected exits since the supervisor started; crash-loop: BACKOFF/FATAL or 3 in 10 min
    for svc in services(config):
        proc = info.get(svc.name, {})
        died = exits.get(svc.name, [])
        state = describe_state(proc.get("statename", "STOPPED" if info else "DOWN"), died, now)
        pid = str(proc.get("pid") or "-")
        address = f"127.0.0.1:{svc.port}" if svc.port else "-"
        listening = ("yes" if port_in_use(svc.port) else "no") if svc.port else "-"
        uptime = "-"
        if proc.get("statename") == "RUNNING" and proc.get("start"):
            uptime = format_uptime(int(proc.get("now", 0) - proc["start"]))
        rows.append((svc.name, state, pid, str(len(died)), uptime, address, listening))
    if config.pg_external:
        where = f"{config.pg_host}:{config.pg_port}"
        rows.append(("postgres", "EXTERNAL", "-", "-", "-", where, "-"))
    if config.kafka_external:
        rows.append(("kafka", "EXTERNAL", "-", "-", "-", config.kafka_bootstrap, "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        _say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if not info:
        _say("\nsupervisord is not running: `make up` starts the stack")
    else:
        _say("\n" + kafka_health(config))
        _say(f"logs: {config.log_dir}  (make logs)")


def _named(config: StackConfig, names: list[str]) -> list[str]:
    known = [s.name for s in services(config)]
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        what = f"no service {', '.join(repr(n) for n in unknown)}" if unknown else "no service"
        raise StackError(f"{what}; services: {', '.join(known)} (e.g. SERVICE=consumer)")
    if supervisor_pid(config) is None:
        raise StackError("the stack is not running; `make up` starts it")
    return names


def cmd_service(config: StackConfig, action: str, names: list[str]) -> None:
    """stop, start or restart named services of a running stack."""
    names = _named(config, names)
    if action in ("stop", "restart"):
        ordered = [n for n in stop_order(services(config)) if n in names]
        _step(f"stopping {', '.join(ordered)}", lambda: _stop(config, ordered))
    if action in ("start", "restart"):
        _rpc_start(config, names)
        _step(f"starting {', '.join(names)}", lambda: _wait_running(config, names))
    cmd_status(config)


def cmd_logs(config: StackConfig, follow: bool) -> None:
    logs = sorted(config.log_dir.glob("*.log"))
    if not logs:
        raise StackError(f"no logs in {config.log_dir}; start the stack with `make up`")
    tail = shutil.which("tail") or "tail"
    os.execv(tail, [tail, "-n", "20", *(["-F"] if follow else []), *map(str, logs)])


def cmd_wipe(config: StackConfig) -> None:
    if supervisor_pid(config) is not None:
        raise StackError("the stack is running; run `make down` before wiping its data")
    if config.root.exists():
        shutil.rmtree(config.root)
    _say(f"removed {config.root}")


def cmd_kafka_env(config: StackConfig, role: str) -> None:
    """`eval "$(python -m stack kafka-env operator)"` and then run e.g. the redrive."""
    from streaming.principals import PRINCIPALS

    roles = [p.role for p in PRINCIPALS]
    if role not in roles:
        raise StackError(f"no Kafka principal {role!r}; one of: {', '.join(roles)}")
    for key, value in config.kafka_env(role).items():
        _say(f"export {key}={shlex.quote(value)}")


def kafka_health(config: StackConfig, timeout: float = 5.0) -> str:
    """One line: brokers up of those expected, the active controller, partitions under-
    replicated and offline, as the cluster's metadata says."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**config.kafka_client("inspector"), "log_level": 0})
    try:
        cluster = admin.describe_cluster(request_timeout=timeout).result()
        metadata = admin.list_topics(timeout=timeout)
    except Exception as exc:  # down, refused: the line says so, status goes on
        return f"kafka: no answer from {config.kafka_bootstrap} ({str(exc)[:120]})"
    parts = [p for t in metadata.topics.values() for p in t.partitions.values()]
    under = sum(len(p.isrs) < len(p.replicas) for p in parts)
    offline = sum(p.leader < 0 for p in parts)
    expected = "" if config.kafka_external else f" of {config.kafka_brokers}"
    controller = cluster.controller.id if cluster.controller is not None else "none"
    return (
        f"kafka: {len(cluster.nodes)}{expected} brokers up, controller {controller}, "
        f"{under} under-replicated and {offline} offline of {len(parts)} partitions"
    )


def cmd_migrate(config: StackConfig) -> None:
    applied = apply_migrations(config.admin_dsn(), config.role_passwords)
    _say(f"applied {', '.join(applied)}" if applied else "schema is up to date")


def cmd_airflow(config: StackConfig, args: list[str]) -> None:
    """Run the `airflow` CLI against the stack's Airflow (its database and settings)."""
    if not config.airflow_enabled:
        raise StackError("Airflow is switched off (SMART_ACCESS_AIRFLOW=off)")
    if not (config.airflow_home / "stack-secrets.json").exists():
        raise StackError("the stack's Airflow is not set up yet; run `make up` first")
    binary = str(Path(sys.executable).parent / "airflow")
    env = {**os.environ, **airflow.airflow_env(config, dict(os.environ))}
    os.execve(binary, [binary, *args], env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="install what is missing and start every service")
    sub.add_parser("down", help="stop every service, keep data")
    sub.add_parser("status", help="what runs where")
    logs = sub.add_parser("logs", help="tail the service logs")
    logs.add_argument("--no-follow", action="store_true", help="print and exit")
    for action in ("stop", "start", "restart"):
        one = sub.add_parser(action, help=f"{action} services of a running stack")
        one.add_argument("services", nargs="*", metavar="SERVICE", help="e.g. consumer")
    sub.add_parser("wipe", help="delete the stack's data (stack must be down)")
    env = sub.add_parser(
        "kafka-env", help="print `export KAFKA_...` lines to run a tool as a Kafka principal"
    )
    env.add_argument(
        "role",
        nargs="?",
        default="operator",
        help="principal of streaming/principals.py (default operator: redrive, replay)",
    )
    sub.add_parser("migrate", help="apply database migrations")
    cli = sub.add_parser("airflow", help="run the airflow CLI against the stack's Airflow")
    cli.add_argument("args", nargs=argparse.REMAINDER, help="e.g. dags unpause DAG_ID")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        load_env_file(REPO_ROOT / ".env")  # the user's settings; the shell's win
        config = StackConfig.from_env()
        if args.command == "up":
            cmd_up(config)
        elif args.command == "down":
            cmd_down(config)
        elif args.command == "status":
            cmd_status(config)
        elif args.command == "logs":
            cmd_logs(config, follow=not args.no_follow)
        elif args.command in ("stop", "start", "restart"):
            cmd_service(config, args.command, args.services)
        elif args.command == "wipe":
            cmd_wipe(config)
        elif args.command == "migrate":
            cmd_migrate(config)
        elif args.command == "kafka-env":
            cmd_kafka_env(config, args.role)
        elif args.command == "airflow":
            cmd_airflow(config, args.args)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
