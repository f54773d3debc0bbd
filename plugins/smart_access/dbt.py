"""Run dbt once per call and record what it did in PostgreSQL.

`run_dbt_build()` starts ONE `dbt build` process (dbt's imports cost seconds, so one
process per cycle beats one per model), then reads `run_results.json` and writes a
row per invocation to `ops.dbt_runs` and a row per node to `ops.dbt_node_results`,
where the dashboard reads test results. `run_source_freshness()` does the same for
`dbt source freshness` into `ops.source_freshness`.

Connection: dbt and the recorder log in with the same settings as
`dbt_project/profiles.yml`: libpq's PGHOST / PGPORT / PGDATABASE for the address,
DBT_USER (default `smart_access_transformer`) and DBT_PASSWORD (default
$SMART_ACCESS_TRANSFORMER_PASSWORD, else the local-development `transformer`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2

from smart_access import watermarks

__all__ = [
    "DBT_PROJECT_DIR",
    "DbtBuildResult",
    "DbtError",
    "FreshnessResult",
    "NodeResult",
    "SourceFreshness",
    "dbt_connection_params",
    "run_dbt_build",
    "run_source_freshness",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
PROJECT_DIR_VARIABLE = "SMART_ACCESS_DBT_PROJECT_DIR"
DEFAULT_DBT_USER = "smart_access_transformer"
DEFAULT_DBT_PASSWORD = "transformer"  # noqa: S105 - embedded stack's documented local default

LOCK_WAIT_VARIABLE = "SMART_ACCESS_TRANSFORM_LOCK_WAIT_SECONDS"
BUILD_WINDOW_VARIABLE = "SMART_ACCESS_BUILD_WINDOW"
DEFAULT_LOCK_WAIT_SECONDS = "600"
_HINT = " (dbt_project/profiles.yml reads PGHOST, PGPORT, PGDATABASE, DBT_USER, DBT_PASSWORD)"
_PERIOD_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class DbtError(RuntimeError):
    """dbt could not run at all (bad profile, database unreachable, parse error).

    The message is one line saying what went wrong and how to fix it. A build that
    ran but had failing models or tests is not an error: see DbtBuildResult.success.
    """


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    resource_type: str  # model, test, unit_test, snapshot, seed
    name: str
    status: str  # success, error, skipped, pass, fail, warn, no-op
    rows_affected: int | None
    failures: int | None
    execution_seconds: float
    message: str | None


@dataclass(frozen=True)
class DbtBuildResult:
    """What one `dbt build` did.

    success: dbt exited 0 (every model built, no test failed with severity error).
    rows_affected: model/snapshot name -> rows written by this run.
    failed_nodes: names of nodes with status error or fail (warnings not included).
    """

    invocation_id: str
    return_code: int
    success: bool
    elapsed_seconds: float
    started_at: datetime
    finished_at: datetime
    nodes: tuple[NodeResult, ...]
    rows_affected: dict[str, int] = field(default_factory=dict)
    tests_passed: int = 0
    tests_failed: int = 0
    tests_warned: int = 0
    failed_nodes: tuple[str, ...] = ()
    skipped_nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceFreshness:
    source_name: str
    table_name: str
    status: str  # pass, warn, error, runtime error
    max_loaded_at: datetime | None
    age_seconds: float | None


@dataclass(frozen=True)
class FreshnessResult:
    invocation_id: str
    return_code: int
    success: bool  # no source in error
    elapsed_seconds: float
    sources: tuple[SourceFreshness, ...]

    @property
    def worst_status(self) -> str:
        order = ["pass", "warn", "error", "runtime error"]
        return max((s.status for s in self.sources), key=order.index, default="pass")


# --- running -------------------------------------------------------------------


def dbt_connection_params(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The connection dbt's profile resolves to, for psycopg2 (same defaults)."""
    env = os.environ if env is None else env
    return {
        "host": env.get("PGHOST", "127.0.0.1"),
        "port": int(env.get("PGPORT", "5432")),
        "dbname": env.get("PGDATABASE", "smart_access"),
        "user": env.get("DBT_USER", DEFAULT_DBT_USER),
        "password": env.get(
            "DBT_PASSWORD", env.get("SMART_ACCESS_TRANSFORMER_PASSWORD", DEFAULT_DBT_PASSWORD)
        ),
        "connect_timeout": 10,
    }


def project_dir(env: Mapping[str, str] | None = None) -> Path:
    """The dbt project to run: $SMART_ACCESS_DBT_PROJECT_DIR, else the repo's own."""
    env = os.environ if env is None else env
    configured = env.get(PROJECT_DIR_VARIABLE)
    return Path(configured) if configured else DBT_PROJECT_DIR


def _dbt_executable() -> str:
    candidate = Path(sys.executable).parent / "dbt"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("dbt")
    if found:
        return found
    raise DbtError(f"dbt not found next to {sys.executable}; run `make setup`")


def _invoke(
    args: list[str],
    *,
    env: Mapping[str, str] | None,
    target: str | None,
    target_path: Path,
    in_process: bool = False,
) -> tuple[int, str, float]:
    project = project_dir(env)
    command = [
        _dbt_executable(),
        *args,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target-path",
        str(target_path),
    ]
    if target:
        command += ["--target", target]
    run_env = dict(os.environ if env is None else env)
    run_env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    run_env.setdefault("DBT_LOG_PATH", str(target_path.parent / "logs"))
    if in_process:
        return _invoke_in_process(command[1:], run_env, project)
    logger.info("running %s", " ".join(command[1:]))
    started = time.monotonic()
    # One process for the whole build; each node's result is logged at INFO the moment
    # dbt reports it (the task log shows progress), everything else at DEBUG.
    lines: list[str] = []
    with subprocess.Popen(
        command,
        cwd=project,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            finished = _NODE_FINISHED.match(_ANSI.sub("", line))
            if finished:
                logger.info("dbt: %s", finished.group(1))
            else:
                logger.debug("dbt: %s", line)
    elapsed = time.monotonic() - started
    return proc.returncode, "\n".join(lines), elapsed


def _invoke_in_process(
    args: list[str], run_env: Mapping[str, str], project: Path
) -> tuple[int, str, float]:
    """dbt in this process (dbtRunner), each node logged at INFO as it finishes (dbt's
    NodeFinished event). For a process that runs one build at a time, as an Airflow
    task does: dbt reads the environment (the build window, the credentials) from
    os.environ, which is set for the call and restored after it, and dbtRunner must
    not run twice at once in one process. Returns what `_invoke` does."""
    from dbt.cli.main import dbtRunner

    messages: list[str] = []

    def on_event(event: Any) -> None:
        name = event.info.name
        if name == "NodeFinished":
            node, result = event.data.node_info, event.data.run_result
            message = f" - {result.message}" if result.message else ""
            logger.info(
                "dbt: %s %s: %s in %.2fs%s",
                node.resource_type,
                node.node_name,
                result.status,
                result.execution_time,
                message[:300],
            )
        elif event.info.level in ("error", "warn"):
            messages.append(event.info.msg)

    logger.info("running in process: dbt %s", " ".join(args))
    saved = dict(os.environ)
    os.environ.update(run_env)
    cwd = os.getcwd()
    started = time.monotonic()
    try:
        os.chdir(project)
        outcome = dbtRunner(callbacks=[on_event]).invoke([*args, "--quiet"])
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
    elapsed = time.monotonic() - started
    if outcome.exception is not None:
        messages.append(f"Encountered an error: {outcome.exception}")
        return 2, "\n".join(messages), elapsed
    return (0 if outcome.success else 1), "\n".join(messages), elapsed


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# "12:00:01  3 of 18 OK created sql incremental model marts.fct_alerts ... [INSERT 0 5 in 0.4s]"
_NODE_FINISHED = re.compile(r"^\d\d:\d\d:\d\d\s+(\d+ of \d+ (?!START\b)\S.*)$")


def _first_error_line(output: str) -> str:
    """The most telling line of dbt's output: the detail under "Encountered an error"."""
    clean = _ANSI.sub("", output)
    lines = [re.sub(r"^\d\d:\d\d:\d\d\s+", "", line).strip() for line in clean.splitlines()]
    lines = [line for line in lines if line]
    for index, line in enumerate(lines):
        if line.startswith("Encountered an error"):
            detail = [part for part in lines[index + 1 : index + 3] if part]
            return " ".join(detail) or line
    for line in lines:
        if "Error" in line or "FATAL" in line:
            return line
    return lines[-1] if lines else "no output"


def _read_json(path: Path, since: float) -> dict[str, Any] | None:
    """The artifact, if this invocation wrote it (not a stale one from a past run)."""
    if not path.exists() or path.stat().st_mtime < since:
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _parse_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run_dbt_build(
    select: str | list[str] | None = None,
    full_refresh: bool = False,
    vars: Mapping[str, Any] | None = None,
    target: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    target_path: str | Path | None = None,
    persist: bool = True,
    lock_wait_seconds: float | None = None,
    unit_tests: bool = False,
    resume_key: str | None = None,
    in_process: bool = False,
) -> DbtBuildResult:
    """Run one `dbt build` and record its results in ops.dbt_runs / ops.dbt_node_results.

    The build holds the database's transform lock (a second build waits up to
    lock_wait_seconds, default $SMART_ACCESS_TRANSFORM_LOCK_WAIT_SECONDS or 600, then
    raises DbtError) and reads the commit-safe window of raw rows given by
    `smart_access.watermarks`; a successful build of the whole graph moves the
    watermarks past it.

    select: dbt node selection (e.g. "marts" or ["fct_alerts+", "tag:staging"]); all by default.
    full_refresh: rebuild incremental models from scratch.
    vars: dbt vars, e.g. {"reference_at": "2026-01-01T12:00:00Z"}.
    target: profiles.yml target (default $DBT_TARGET, else "stack").
    env: environment for dbt and the recorder (default os.environ).
    target_path: where dbt writes artifacts (default dbt_project/target).
    unit_tests: also run the project's dbt unit tests. Off for the cycle: they test
      the models' SQL on fixtures, not the data, so they belong to CI (`make test`
      runs them), and they cost about a second of every 15-minute build.
    resume_key: names the attempt (the pipeline passes its DAG run id). A whole-graph
      build under a key that fails on some nodes keeps its window in the target
      folder; the next call with the same key resumes it with `dbt retry` (only the
      failed and skipped nodes run, with the same window and build stamp) and then
      moves the watermarks - unless another build moved them since, the target's
      run_results.json is another run's, or the selection differs: then it builds
      normally.
    in_process: run dbt in this process (dbtRunner) instead of one `dbt` process: for
      a process that runs one build at a time (the Airflow task); see
      `_invoke_in_process`. Either way each node is logged at INFO as it finishes.
    Raises DbtError when dbt could not run at all; otherwise returns the summary,
    with success False when a model or test failed.
    """
    path = Path(target_path) if target_path else project_dir(env) / "target"
    if lock_wait_seconds is None:
        lock_wait_seconds = float(
            (os.environ if env is None else env).get(LOCK_WAIT_VARIABLE, DEFAULT_LOCK_WAIT_SECONDS)
        )
    try:
        with watermarks.transform_lock(
            dbt_connection_params(env), wait_seconds=lock_wait_seconds
        ) as lock_conn:
            whole = not select and not full_refresh
            resumed = _resumable(path, resume_key, lock_conn) if resume_key and whole else None
            window = resumed or watermarks.open_window(lock_conn, full_refresh=full_refresh)
            # The window goes in the environment, not --vars: see build_var in
            # dbt_project/macros/time_helpers.sql (vars that change every build
            # cost a full re-parse of the project every build).
            build_env = {
                **(os.environ if env is None else env),
                BUILD_WINDOW_VARIABLE: json.dumps(window.dbt_vars(), default=str),
            }
            if resumed is not None:
                result, artifact = _retry_once(target, build_env, path, in_process=in_process)
            else:
                result, artifact = _build_once(
                    select,
                    full_refresh,
                    dict(vars or {}),
                    target,
                    build_env,
                    path,
                    unit_tests=unit_tests,
                    in_process=in_process,
                )
            if result.success and not select:
                watermarks.commit_window(lock_conn, window, result.invocation_id)
            if resume_key and whole:
                _keep_for_resume(path, resume_key, window, result)
    except watermarks.TransformBusy as exc:
        raise DbtError(str(exc)) from None
    except psycopg2.OperationalError as exc:
        params = dbt_connection_params(env)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        raise DbtError(
            f"cannot reach {params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
            f" for the transform lock: {first}{_HINT}"
        ) from None
    if persist:
        _persist_build(
            result,
            artifact,
            env=env,
            target=target,
            selector=" ".join([select] if isinstance(select, str) else select or []),
            full_refresh=full_refresh,
        )
    logger.info(
        "dbt build %s in %.1fs: %d tests passed, %d failed%s",
        "succeeded" if result.success else "FAILED",
        result.elapsed_seconds,
        result.tests_passed,
        result.tests_failed,
        f" ({', '.join(result.failed_nodes)})" if result.failed_nodes else "",
    )
    return result


def _build_once(
    select: str | list[str] | None,
    full_refresh: bool,
    variables: Mapping[str, Any],
    target: str | None,
    env: Mapping[str, str] | None,
    path: Path,
    *,
    unit_tests: bool,
    in_process: bool = False,
) -> tuple[DbtBuildResult, dict[str, Any]]:
    args = ["build"]
    if select:
        selection = [select] if isinstance(select, str) else list(select)
        args += ["--select", *selection]
    if not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    if full_refresh:
        args.append("--full-refresh")
    if variables:
        args += ["--vars", json.dumps(dict(variables), default=str)]
    return _run_build_command(args, target, env, path, in_process=in_process)


def _run_build_command(
    args: list[str],
    target: str | None,
    env: Mapping[str, str] | None,
    path: Path,
    *,
    in_process: bool,
) -> tuple[DbtBuildResult, dict[str, Any]]:
    """Run `dbt build ...` or `dbt retry` and summarise the run_results.json it wrote."""
    wall_started = time.time()
    started_at = datetime.now(UTC)
    return_code, output, elapsed = _invoke(
        args, env=env, target=target, target_path=path, in_process=in_process
    )
    finished_at = datetime.now(UTC)
    artifact = _read_json(path / "run_results.json", wall_started)
    if artifact is None:
        raise DbtError(f"dbt {args[0]} did not run: {_first_error_line(output)}{_HINT}")
    return _summarise_build(artifact, return_code, elapsed, started_at, finished_at), artifact


RESUME_STATE = "resume_state.json"


def _resumable(
    path: Path, key: str, conn: psycopg2.extensions.connection
) -> watermarks.BuildWindow | None:
    """The window of the failed attempt `key` if `dbt retry` can resume it safely."""
    state_path = path / RESUME_STATE
    if not state_path.exists():
        return None
    try:
        state = json.loads(state_path.read_text())
        window = watermarks.BuildWindow.from_json(state["window"])
        results = json.loads((path / "run_results.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("not resuming: unreadable resume state (%s); building normally", exc)
        return None
    reason = None
    if state.get("key") != key:
        reason = f"the failed attempt was {state.get('key')!r}, not {key!r}"
    elif results.get("metadata", {}).get("invocation_id") != state.get("invocation_id"):
        reason = "run_results.json in the target folder belongs to another dbt run"
    elif watermarks.last_committed_stamp(conn) != window.previous_transformed_at:
        reason = "another build moved the watermarks since"
    if reason is not None:
        logger.info("not resuming with dbt retry: %s; building normally", reason)
        state_path.unlink(missing_ok=True)
        return None
    logger.info(
        "resuming the failed build %s with dbt retry (its window, stamp %s)",
        state["invocation_id"],
        window.transformed_at.isoformat(),
    )
    return window


def _keep_for_resume(
    path: Path, key: str, window: watermarks.BuildWindow, result: DbtBuildResult
) -> None:
    state_path = path / RESUME_STATE
    if result.success or not result.failed_nodes:
        state_path.unlink(missing_ok=True)
        return
    state = {"key": key, "invocation_id": result.invocation_id, "window": window.to_json()}
    state_path.write_text(json.dumps(state))


def _retry_once(
    target: str | None, env: Mapping[str, str], path: Path, *, in_process: bool = False
) -> tuple[DbtBuildResult, dict[str, Any]]:
    """`dbt retry`: the previous invocation's failed and skipped nodes, its arguments."""
    return _run_build_command(["retry"], target, env, path, in_process=in_process)


def run_source_freshness(
    select: str | None = None,
    target: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    target_path: str | Path | None = None,
    persist: bool = True,
) -> FreshnessResult:
    """Run `dbt source freshness` and record each source table in ops.source_freshness.

    success is False when a source is past its error_after threshold (or could not
    be checked). Raises DbtError when dbt could not run at all.
    """
    path = Path(target_path) if target_path else project_dir(env) / "target"
    args = ["source", "freshness", "--output", str(path / "sources.json")]
    if select:
        args += ["--select", select]
    wall_started = time.time()
    started_at = datetime.now(UTC)
    return_code, output, elapsed = _invoke(args, env=env, target=target, target_path=path)
    finished_at = datetime.now(UTC)
    artifact = _read_json(path / "sources.json", wall_started)
    if artifact is None:
        raise DbtError(f"dbt source freshness did not run: {_first_error_line(output)}{_HINT}")
    sources = []
    for item in artifact.get("results", []):
        _, _, source_name, table_name = item["unique_id"].split(".", 3)
        sources.append(
            SourceFreshness(
                source_name=source_name,
                table_name=table_name,
                status=item["status"],
                max_loaded_at=_parse_ts(item.get("max_loaded_at")),
                age_seconds=item.get("max_loaded_at_time_ago_in_s"),
            )
        )
    result = FreshnessResult(
        invocation_id=artifact["metadata"]["invocation_id"],
        return_code=return_code,
        success=all(s.status in ("pass", "warn") for s in sources),
        elapsed_seconds=elapsed,
        sources=tuple(sources),
    )
    if persist:
        _persist_freshness(result, artifact, started_at, finished_at, env=env, target=target)
    return result


# --- summarising ------------------------------------------------------------------


def _summarise_build(
    artifact: dict[str, Any],
    return_code: int,
    elapsed: float,
    started_at: datetime,
    finished_at: datetime,
) -> DbtBuildResult:
    nodes = []
    for item in artifact.get("results", []):
        unique_id = item["unique_id"]
        rows = (item.get("adapter_response") or {}).get("rows_affected")
        nodes.append(
            NodeResult(
                unique_id=unique_id,
                resource_type=unique_id.split(".", 1)[0],
                name=unique_id.rsplit(".", 1)[-1],
                status=str(item["status"]),
                rows_affected=int(rows) if rows is not None and rows >= 0 else None,
                failures=item.get("failures"),
                execution_seconds=float(item.get("execution_time") or 0.0),
                message=item.get("message"),
            )
        )
    tests = [n for n in nodes if n.resource_type in ("test", "unit_test")]
    return DbtBuildResult(
        invocation_id=artifact["metadata"]["invocation_id"],
        return_code=return_code,
        success=return_code == 0 and not any(n.status in ("error", "fail") for n in nodes),
        elapsed_seconds=float(artifact.get("elapsed_time") or elapsed),
        started_at=started_at,
        finished_at=finished_at,
        nodes=tuple(nodes),
        rows_affected={
            n.name: n.rows_affected
            for n in nodes
            if n.resource_type in ("model", "snapshot") and n.rows_affected is not None
        },
        tests_passed=sum(n.status == "pass" for n in tests),
        tests_failed=sum(n.status in ("fail", "error") for n in tests),
        tests_warned=sum(n.status == "warn" for n in tests),
        failed_nodes=tuple(n.name for n in nodes if n.status in ("error", "fail")),
        skipped_nodes=tuple(n.name for n in nodes if n.status == "skipped"),
    )


# --- persisting -------------------------------------------------------------------


def _connect(env: Mapping[str, str] | None) -> psycopg2.extensions.connection:
    params = dbt_connection_params(env)
    try:
        return psycopg2.connect(**params)
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        raise DbtError(
            f"cannot record dbt results as {params['user']}@{params['host']}:{params['port']}"
            f"/{params['dbname']}: {first}; check PGHOST/PGPORT/DBT_USER/DBT_PASSWORD"
        ) from None


def _timing(item: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    for entry in item.get("timing") or []:
        if entry.get("name") == "execute":
            return _parse_ts(entry.get("started_at")), _parse_ts(entry.get("completed_at"))
    return None, None


def _persist_build(
    result: DbtBuildResult,
    artifact: dict[str, Any],
    *,
    env: Mapping[str, str] | None,
    target: str | None,
    selector: str,
    full_refresh: bool,
) -> None:
    by_id = {item["unique_id"]: item for item in artifact.get("results", [])}
    conn = _connect(env)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """
                insert into ops.dbt_runs (invocation_id, command, target_name, started_at,
                    finished_at, elapsed_seconds, return_code, success, nodes_total,
                    nodes_error, tests_passed, tests_failed, tests_warned, selector,
                    is_full_refresh)
                values (%s, 'build', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                on conflict (invocation_id) do nothing
                """,
                (
                    result.invocation_id,
                    target or os.environ.get("DBT_TARGET", "stack"),
                    result.started_at,
                    result.finished_at,
                    result.elapsed_seconds,
                    result.return_code,
                    result.success,
                    len(result.nodes),
                    sum(n.status == "error" for n in result.nodes),
                    result.tests_passed,
                    result.tests_failed,
                    result.tests_warned,
                    selector or None,
                    full_refresh,
                ),
            )
            rows = []
            for node in result.nodes:
                item = by_id[node.unique_id]
                started, completed = _timing(item)
                rows.append(
                    (
                        result.invocation_id,
                        node.unique_id,
                        node.resource_type,
                        node.name,
                        node.status,
                        node.rows_affected,
                        node.failures,
                        node.execution_seconds,
                        started,
                        completed,
                        node.message,
                        item.get("relation_name"),
                    )
                )
            cur.executemany(
                """
                insert into ops.dbt_node_results (invocation_id, unique_id, resource_type,
                    node_name, status, rows_affected, failures, execution_seconds,
                    started_at, completed_at, message, relation_name)
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                on conflict (invocation_id, unique_id) do nothing
                """,
                rows,
            )
    finally:
        conn.close()


def _seconds(criteria: dict[str, Any] | None) -> float | None:
    if not criteria or criteria.get("count") is None or criteria.get("period") is None:
        return None
    return float(criteria["count"]) * _PERIOD_SECONDS[criteria["period"]]


def _persist_freshness(
    result: FreshnessResult,
    artifact: dict[str, Any],
    started_at: datetime,
    finished_at: datetime,
    *,
    env: Mapping[str, str] | None,
    target: str | None,
) -> None:
    conn = _connect(env)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """
                insert into ops.dbt_runs (invocation_id, command, target_name, started_at,
                    finished_at, elapsed_seconds, return_code, success, nodes_total,
                    nodes_error)
                values (%s, 'source freshness', %s, %s, %s, %s, %s, %s, %s, %s)
                on conflict (invocation_id) do nothing
                """,
                (
                    result.invocation_id,
                    target or os.environ.get("DBT_TARGET", "stack"),
                    started_at,
                    finished_at,
                    result.elapsed_seconds,
                    result.return_code,
                    result.success,
                    len(result.sources),
                    sum(s.status not in ("pass", "warn") for s in result.sources),
                ),
            )
            for item in artifact.get("results", []):
                _, _, source_name, table_name = item["unique_id"].split(".", 3)
                criteria = item.get("criteria") or {}
                cur.execute(
                    """
                    insert into ops.source_freshness (invocation_id, unique_id, source_name,
                        table_name, status, max_loaded_at, snapshotted_at, age_seconds,
                        warn_after_seconds, error_after_seconds, error_message)
                    values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                    on conflict (invocation_id, unique_id) do nothing
                    """,
                    (
                        result.invocation_id,
                        item["unique_id"],
                        source_name,
                        table_name,
                        item["status"],
                        _parse_ts(item.get("max_loaded_at")),
                        _parse_ts(item.get("snapshotted_at")) or finished_at,
                        item.get("max_loaded_at_time_ago_in_s"),
                        _seconds(criteria.get("warn_after")),
                        _seconds(criteria.get("error_after")),
                        item.get("error"),
                    ),
                )
    finally:
        conn.close()
