"""INTERIM dbt adapter, to be replaced by `smart_access.dbt` (the dbt project's helper).

It keeps the interface that module exposes, `run_dbt_build(select=None,
full_refresh=False, vars=None, target=None)` and `run_source_freshness()`, so the DAG
and its tests run before it lands. `smart_access.pipeline` is the only importer:
swapping the import there (and deleting this file) is the whole change.

One `dbt build` process per cycle (not a task per model): each dbt process pays
~5 s of imports, so one build of the whole project is several times faster than a
task per model, and run_results.json still says which model or test failed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DbtBuildResult",
    "NodeResult",
    "SourceFreshnessResult",
    "run_dbt_build",
    "run_source_freshness",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    name: str
    resource_type: str
    status: str
    schema: str | None
    rows_affected: int | None
    execution_time: float
    message: str | None


@dataclass(frozen=True)
class DbtBuildResult:
    success: bool
    nodes: list[NodeResult]
    duration_seconds: float
    error: str | None = None

    @property
    def models(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.resource_type in {"model", "snapshot"}]

    @property
    def tests_passed(self) -> int:
        return sum(1 for n in self.nodes if n.resource_type == "test" and n.status == "pass")

    @property
    def tests_failed(self) -> int:
        return sum(
            1 for n in self.nodes if n.resource_type == "test" and n.status in {"fail", "error"}
        )

    @property
    def failed_nodes(self) -> list[str]:
        return [n.name for n in self.nodes if n.status in {"fail", "error"}]


@dataclass(frozen=True)
class SourceFreshnessResult:
    status: str  # pass | warn | error | skipped
    sources: dict[str, str] = field(default_factory=dict)


def _project_dir() -> Path:
    from smart_access.settings import PipelineSettings

    return PipelineSettings().dbt_project_dir


def _dbt(args: list[str], project: Path) -> subprocess.CompletedProcess[str]:
    profiles = os.environ.get("DBT_PROFILES_DIR") or str(project)
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    command = [
        str(Path(sys.executable).parent / "dbt"),
        *args,
        "--project-dir",
        str(project),
        "--profiles-dir",
        profiles,
    ]
    logger.info("running %s", " ".join(command))
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, check=False
    )
    for line in result.stdout.splitlines():
        logger.info("dbt: %s", line)
    return result


def run_dbt_build(
    select: str | None = None,
    full_refresh: bool = False,
    vars: dict[str, Any] | None = None,
    target: str | None = None,
) -> DbtBuildResult:
    project = _project_dir()
    args = ["build"]
    if select:
        args += ["--select", select]
    if full_refresh:
        args.append("--full-refresh")
    if vars:
        args += ["--vars", json.dumps(vars)]
    if target:
        args += ["--target", target]
    results_path = project / "target" / "run_results.json"
    results_path.unlink(missing_ok=True)  # never read a previous build's results
    started = time.monotonic()
    result = _dbt(args, project)
    duration = time.monotonic() - started
    if not results_path.exists():
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return DbtBuildResult(
            False, [], duration, error=" | ".join(tail) or "dbt produced no results"
        )
    run_results = json.loads(results_path.read_text())
    manifest_path = project / "target" / "manifest.json"
    nodes_meta = (
        json.loads(manifest_path.read_text()).get("nodes", {}) if manifest_path.exists() else {}
    )
    nodes = []
    for item in run_results.get("results", []):
        meta = nodes_meta.get(item["unique_id"], {})
        rows = (item.get("adapter_response") or {}).get("rows_affected")
        nodes.append(
            NodeResult(
                unique_id=item["unique_id"],
                name=meta.get("name") or item["unique_id"].split(".")[-1],
                resource_type=meta.get("resource_type") or item["unique_id"].split(".")[0],
                status=item["status"],
                schema=meta.get("schema"),
                rows_affected=rows if isinstance(rows, int) and rows >= 0 else None,
                execution_time=float(item.get("execution_time") or 0.0),
                message=item.get("message"),
            )
        )
    error = None if result.returncode == 0 else f"dbt build exited with {result.returncode}"
    return DbtBuildResult(result.returncode == 0, nodes, duration, error=error)


def run_source_freshness() -> SourceFreshnessResult:
    project = _project_dir()
    sources_path = project / "target" / "sources.json"
    sources_path.unlink(missing_ok=True)
    result = _dbt(["source", "freshness"], project)
    sources: dict[str, str] = {}
    if sources_path.exists() and result.returncode in (0, 1):
        for item in json.loads(sources_path.read_text()).get("results", []):
            sources[item["unique_id"]] = item["status"]
    if result.returncode not in (0, 1):
        raise RuntimeError(f"dbt source freshness exited with {result.returncode}")
    statuses = set(sources.values())
    if "error" in statuses or "runtime error" in statuses:
        status = "error"
    elif "warn" in statuses:
        status = "warn"
    elif sources:
        status = "pass"
    else:
        status = "skipped"
    return SourceFreshnessResult(status, sources)
