"""Airflow in the embedded stack: its environment, metadata migration and login.

The four Airflow processes (api-server, scheduler, dag-processor, triggerer) share
one environment built here from the stack's ports and `.env.airflow` at the repo
root (the same file docker compose reads). Values in the process environment win
over the file; values that depend on where the stack runs (database URL, folders,
ports, connections) are always computed here.

`airflow db migrate` costs 10-20 s, most of it imports, so `make up` first compares
the metadata database's alembic revision with the head revision shipped with the
installed Airflow (read from its migration files, without importing Airflow) and
only migrates when they differ.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
from cryptography.fernet import Fernet

from stack.config import (
    AIRFLOW_DATABASE,
    DATABASE,
    REPO_ROOT,
    StackConfig,
    StackError,
    write_private,
)
from streaming import principals

__all__ = [
    "ENV_FILE",
    "KAFKA_CONN_ID",
    "METADATA_ROLE",
    "POSTGRES_CONN_ID",
    "TASK_ROLE",
    "airflow_env",
    "credentials",
    "ensure_logins",
    "ensure_metadata_role",
    "fab_head_revision",
    "head_revision",
    "logins",
    "logins_current",
    "metadata_revision",
    "migrate_metadata",
    "prepare",
    "read_env_file",
    "viewer_credentials",
    "wait_healthy",
]

logger = logging.getLogger(__name__)

ENV_FILE = REPO_ROOT / ".env.airflow"
POSTGRES_CONN_ID = "smart_access_postgres"
KAFKA_CONN_ID = "smart_access_kafka"
# The dead-letter watcher's own consumer group, committing only after the triggerer
# saved its event (the shared-stream trigger refuses auto-commit).
DLQ_WATCHER_CONN_ID = "smart_access_kafka_dlq_watcher"
DLQ_WATCHER_GROUP = principals.DLQ_WATCHER_GROUP  # its ACLs name it too
# Airflow tasks read raw, run dbt and write the pipeline's ops records: the
# transformer role may do exactly that (migration 0030 grants the ops tables).
TASK_ROLE = "smart_access_transformer"
# Airflow's metadata database belongs to a role of its own, not the superuser: an
# Airflow process (and a task it runs) can reach its own tables and nothing else.
METADATA_ROLE = "smart_access_airflow"

_DEFAULT_USER = "airflow"
_DEFAULT_PASSWORD = "airflow"  # noqa: S105 - documented local default, see .env.airflow
_DEFAULT_VIEWER = "viewer"
_DEFAULT_VIEWER_PASSWORD = "viewer"  # noqa: S105 - documented local default, see .env.airflow


# Lines of .env.airflow that only docker compose reads: the embedded stack generates
# its own secrets and takes the role passwords from the environment (stack.config).
COMPOSE_ONLY = frozenset(
    {
        "POSTGRES_PASSWORD",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_API_SECRET_KEY",
        "AIRFLOW_FERNET_KEY",
        "AIRFLOW_UID",
        "SMART_ACCESS_LOADER_PASSWORD",
        "SMART_ACCESS_TRANSFORMER_PASSWORD",
        "SMART_ACCESS_ANALYST_PASSWORD",
        "SMART_ACCESS_MONITOR_PASSWORD",
        "AIRFLOW_METADATA_PASSWORD",
    }
)


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """`KEY=VALUE` lines of a dotenv file; comments and blank lines are skipped."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise StackError(f"{path.name} line {number} is not KEY=VALUE: {line!r}")
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _settings(env: dict[str, str]) -> dict[str, str]:
    """`.env.airflow` overlaid with the variables of the same names in `env`."""
    file_values = read_env_file()
    return {**file_values, **{k: v for k, v in env.items() if k in file_values}}


def credentials(env: dict[str, str]) -> tuple[str, str]:
    """The admin login."""
    values = _settings(env)
    return (
        values.get("_AIRFLOW_WWW_USER_USERNAME") or _DEFAULT_USER,
        values.get("_AIRFLOW_WWW_USER_PASSWORD") or _DEFAULT_PASSWORD,
    )


def viewer_credentials(env: dict[str, str]) -> tuple[str, str]:
    """The read-only login (FAB's Viewer role: sees DAGs, runs and logs, changes nothing)."""
    values = _settings(env)
    return (
        values.get("_AIRFLOW_VIEWER_USERNAME") or _DEFAULT_VIEWER,
        values.get("_AIRFLOW_VIEWER_PASSWORD") or _DEFAULT_VIEWER_PASSWORD,
    )


def logins(env: dict[str, str]) -> list[dict[str, str]]:
    """Every login of the embedded Airflow, with its FAB role."""
    admin, admin_password = credentials(env)
    viewer, viewer_password = viewer_credentials(env)
    if admin == viewer:
        raise StackError(
            f"_AIRFLOW_WWW_USER_USERNAME and _AIRFLOW_VIEWER_USERNAME are both {admin!r}; "
            "give the read-only login another name in .env.airflow"
        )
    return [
        {"username": admin, "password": admin_password, "role": "Admin"},
        {"username": viewer, "password": viewer_password, "role": "Viewer"},
    ]


def _secrets_path(config: StackConfig) -> Path:
    return config.airflow_home / "stack-secrets.json"


def _metadata_password_path(config: StackConfig) -> Path:
    return config.airflow_home / "metadata-password"


def prepare(config: StackConfig, env: dict[str, str]) -> None:
    """Write AIRFLOW_HOME's files: generated secrets (once) and the metadata role's
    password.

    The JWT secret, API secret key and Fernet key are generated once per stack and
    kept in it (mode 0600), so tokens and encrypted values survive a down/up.
    """
    config.airflow_home.mkdir(parents=True, exist_ok=True)
    path = _secrets_path(config)
    if not path.exists():
        values = {
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        }
        write_private(path, json.dumps(values))
    metadata = _metadata_password_path(config)
    wanted = env.get("AIRFLOW_METADATA_PASSWORD")
    if wanted or not metadata.exists():
        write_private(metadata, wanted or secrets.token_urlsafe(32))
    # no longer used: the simple auth manager's password file of earlier stacks
    (config.airflow_home / "simple_auth_manager_passwords.json").unlink(missing_ok=True)


def _stack_secrets(config: StackConfig) -> dict[str, str]:
    path = _secrets_path(config)
    return dict(json.loads(path.read_text())) if path.exists() else {}


def metadata_password(config: StackConfig) -> str | None:
    """The metadata role's password, once `prepare` has generated it."""
    path = _metadata_password_path(config)
    return path.read_text().strip() if path.exists() else None


def metadata_url(config: StackConfig) -> str:
    from sqlalchemy.engine import URL

    return URL.create(
        "postgresql+psycopg2",
        username=METADATA_ROLE,
        password=metadata_password(config),
        host=config.pg_host,
        port=config.pg_port,
        database=AIRFLOW_DATABASE,
    ).render_as_string(hide_password=False)


def connection_env(config: StackConfig) -> dict[str, str]:
    """`AIRFLOW_CONN_*` for the platform's PostgreSQL (task role) and Kafka."""
    from sqlalchemy.engine import URL

    postgres = URL.create(
        "postgresql",
        username=TASK_ROLE,
        password=config.role_passwords[TASK_ROLE],
        host=config.pg_host,
        port=config.pg_port,
        database=DATABASE,
    ).render_as_string(hide_password=False)
    # Airflow's own principal (streaming/principals.py): describe and read only
    client = config.kafka_client("airflow")
    kafka = {"conn_type": "kafka", "extra": client}
    watcher = {
        "conn_type": "kafka",
        "extra": {
            **client,
            "group.id": DLQ_WATCHER_GROUP,
            "enable.auto.commit": "false",
            "auto.offset.reset": "latest",
        },
    }
    return {
        f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}": postgres,
        f"AIRFLOW_CONN_{KAFKA_CONN_ID.upper()}": json.dumps(kafka),
        f"AIRFLOW_CONN_{DLQ_WATCHER_CONN_ID.upper()}": json.dumps(watcher),
    }


def airflow_env(config: StackConfig, env: dict[str, str]) -> dict[str, str]:
    """The environment of every Airflow process (and of `airflow db migrate`)."""
    values = {
        k: v
        for k, v in _settings(env).items()
        if not k.startswith(("_AIRFLOW_WWW_", "_AIRFLOW_VIEWER_")) and k not in COMPOSE_ONLY
    }
    values.update(_stack_secrets(config))
    values.update(
        {
            "AIRFLOW_HOME": str(config.airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(config),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
                f"http://127.0.0.1:{config.airflow_port}/execution/"
            ),
            "AIRFLOW__API__HOST": "127.0.0.1",
            # the scheduler's health server listens on every interface by default
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(config.airflow_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{config.airflow_port}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(config.log_dir / "airflow"),
            # A crash in a C extension leaves a Python traceback in the task log.
            "PYTHONFAULTHANDLER": "1",
            # Plugins and DAG-side helpers are imported as the `smart_access` package.
            "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'plugins'}",
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            # dbt (run by the tasks) reads libpq variables; it connects as the task role.
            **config.role_env(TASK_ROLE),
            **connection_env(config),
        }
    )
    if config.prometheus_enabled:
        # StatsD to the stack's exporter, tags InfluxDB-style so dag_id, task_id and
        # state become Prometheus labels; the per-DAG legacy names would duplicate them.
        values.update(
            {
                "AIRFLOW__METRICS__STATSD_ON": "True",
                "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
                "AIRFLOW__METRICS__STATSD_PORT": str(config.statsd_port),
                "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
                "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
                "AIRFLOW__METRICS__LEGACY_NAMES_ON": "False",
            }
        )
    # Knobs the pipeline reads that a user may set in their shell.
    values.update({k: v for k, v in env.items() if k.startswith("SMART_ACCESS_")})
    values.pop("SMART_ACCESS_STACK_DIR", None)
    return values


# --- metadata database -------------------------------------------------------------

_REVISION = re.compile(r"^revision\s*(?::\s*str)?\s*=\s*['\"]([0-9a-z]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]+)?=\s*(.+)$", re.M)


def _airflow_package() -> Path:
    spec = importlib.util.find_spec("airflow")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("apache-airflow is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def head_revision() -> str:
    """The alembic head of the installed Airflow, read from its migration files."""
    return _head(_airflow_package() / "migrations" / "versions")


def fab_head_revision() -> str:
    """The alembic head of the FAB auth manager's tables (ab_user, ab_role, ...)."""
    return _head(_airflow_package() / "providers" / "fab" / "migrations" / "versions")


def _head(versions: Path) -> str:
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        text = path.read_text()
        found = _REVISION.search(text)
        if not found:
            continue
        revisions.add(found.group(1))
        down = _DOWN.search(text)
        if down:
            parents.update(re.findall(r"['\"]([0-9a-z]+)['\"]", down.group(1)))
    heads = revisions - parents
    if len(heads) != 1:
        raise StackError(f"cannot tell Airflow's migration head from {versions}: {sorted(heads)}")
    return heads.pop()


def metadata_revision(config: StackConfig, table: str = "alembic_version") -> str | None:
    """The metadata database's alembic revision (`alembic_version_fab`: the FAB
    tables'), or None before the first migration."""
    conn = psycopg2.connect(config.admin_dsn(AIRFLOW_DATABASE))
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass(%s) is not null", (f"public.{table}",))
            row = cur.fetchone()
            if not row or not row[0]:
                return None
            cur.execute(f"select version_num from {table}")
            found = cur.fetchone()
            return str(found[0]) if found else None
    finally:
        conn.close()


# Objects in the metadata database that are not the role's yet: a stack whose
# metadata was created by the superuser (before it had a role of its own) is handed
# over on the next `make up`. A sequence owned by a table follows its table.
_HAND_OVER = """
do $hand_over$
declare
    item record;
begin
    for item in
        select format('alter %s %s owner to %I',
                      case c.relkind when 'S' then 'sequence' when 'v' then 'view'
                                     when 'm' then 'materialized view' else 'table' end,
                      c.oid::regclass, current_setting('smart_access.metadata_role')) as sql
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = 'public'
          and c.relkind in ('r', 'p', 'v', 'm', 'S')
          and c.relowner <> current_setting('smart_access.metadata_role')::regrole
          and not exists (
              select 1 from pg_depend as d
              where d.objid = c.oid and d.classid = 'pg_class'::regclass
                and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
          )
        union all
        select format('alter type %s owner to %I', t.oid::regtype,
                      current_setting('smart_access.metadata_role'))
        from pg_type as t
        join pg_namespace as n on n.oid = t.typnamespace
        where n.nspname = 'public' and t.typtype in ('e', 'd')
          and t.typowner <> current_setting('smart_access.metadata_role')::regrole
    loop
        execute item.sql;
    end loop;
end;
$hand_over$
"""


def ensure_metadata_role(config: StackConfig) -> None:
    """Airflow's metadata database, owned by its own login role (created or updated
    with the stack's password), its schema and every object in it the role's, and
    closed to every other role."""
    password = metadata_password(config)
    if password is None:
        raise StackError(
            f"{_metadata_password_path(config)} is missing; run `make up` (it generates it)"
        )
    conn = psycopg2.connect(config.admin_dsn("postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_roles where rolname = %s", (METADATA_ROLE,))
            verb = "alter" if cur.fetchone() else "create"
            cur.execute(f'{verb} role "{METADATA_ROLE}" login password %s', (password,))
            cur.execute(f'alter database "{AIRFLOW_DATABASE}" owner to "{METADATA_ROLE}"')
            cur.execute(f'revoke all on database "{AIRFLOW_DATABASE}" from public')
    finally:
        conn.close()
    conn = psycopg2.connect(config.admin_dsn(AIRFLOW_DATABASE))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'alter schema public owner to "{METADATA_ROLE}"')
            cur.execute(
                "select set_config('smart_access.metadata_role', %s, false)", (METADATA_ROLE,)
            )
            cur.execute(_HAND_OVER)
    finally:
        conn.close()


def migrate_metadata(config: StackConfig, env: dict[str, str]) -> bool:
    """Hand the metadata database to its role, then run `airflow db migrate` when the
    metadata is behind; True when it ran."""
    ensure_metadata_role(config)
    if metadata_revision(config) == head_revision() and (
        metadata_revision(config, "alembic_version_fab") == fab_head_revision()
    ):
        return False
    log = config.log_dir / "airflow-db-migrate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            env=airflow_env(config, env),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            check=False,
            timeout=600,
        )
    if result.returncode != 0:
        raise StackError(f"airflow db migrate failed (exit {result.returncode}); see {log}")
    return True


_LOGINS_SQL = """
select u.username, u.password, u.active, array_agg(r.name order by r.name)
from ab_user as u
left join ab_user_role as ur on ur.user_id = u.id
left join ab_role as r on r.id = ur.role_id
group by u.username, u.password, u.active
"""


def logins_current(config: StackConfig, env: dict[str, str]) -> bool:
    """Whether every login exists, active, with its one role and its password."""
    from werkzeug.security import check_password_hash

    conn = psycopg2.connect(config.admin_dsn(AIRFLOW_DATABASE))
    try:
        with conn.cursor() as cur:
            cur.execute("select to_regclass('public.ab_user') is not null")
            row = cur.fetchone()
            if not row or not row[0]:
                return False
            cur.execute(_LOGINS_SQL)
            found = {name: (hashed, active, roles) for name, hashed, active, roles in cur}
    finally:
        conn.close()
    for login in logins(env):
        hashed, active, roles = found.get(login["username"], (None, False, []))
        if not active or roles != [login["role"]] or not hashed:
            return False
        if not check_password_hash(hashed, login["password"]):
            return False
    return True


def ensure_logins(config: StackConfig, env: dict[str, str]) -> bool:
    """Create or update the admin and the read-only login in FAB's tables (from
    `.env.airflow` or the shell); True when something changed. One Airflow process
    (~10 s) only when the database disagrees."""
    if logins_current(config, env):
        return False
    log = config.log_dir / "airflow-logins.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "stack.airflow_logins"],
            input=json.dumps(logins(env)),
            env=airflow_env(config, env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO_ROOT,
            check=False,
            timeout=300,
        )
    if result.returncode != 0:
        raise StackError(
            f"creating the Airflow logins failed (exit {result.returncode}); see {log}"
        )
    return True


def wait_healthy(config: StackConfig, timeout: float = 180.0) -> None:
    """Wait until the api-server answers its health endpoint."""
    url = f"http://127.0.0.1:{config.airflow_port}/api/v2/monitor/health"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(1)
    raise StackError(
        f"Airflow api-server not healthy at {url} after {timeout:.0f}s ({last}); "
        f"see {config.log_dir}/airflow-api-server.log"
    )
