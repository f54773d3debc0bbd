"""Every DAG file imports cleanly and the pipeline DAG is configured as specified.

Parsing happens with a metadata database URL that points nowhere: a DAG file that
touched a database or the network at parse time would fail or hang here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stack.config import REPO_ROOT

DAGS = REPO_ROOT / "dags"
DAG_ID = "smart_access_streaming_pipeline"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("airflow-home")
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO_ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql://nobody:x@127.0.0.1:1/none",
    )
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports(dagbag: Any) -> None:
    files = sorted(p.name for p in DAGS.glob("*.py"))
    assert files, "no DAG files found"
    assert dagbag.import_errors == {}
    assert {Path(d.fileloc).name for d in dagbag.dags.values()} == set(files)


def test_schedule_and_run_limits(dagbag: Any) -> None:
    dag = dagbag.dags[DAG_ID]
    assert dag.timetable.expression == "*/15 * * * *"
    assert str(dag.timetable.timezone) in {"UTC", "Timezone('UTC')"}
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"  # real intervals
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.is_paused_upon_creation is True
    assert dag.dagrun_timeout is not None and dag.dagrun_timeout < timedelta(minutes=15)
    assert {"smart-access", "dbt", "kafka"} <= set(dag.tags)
    assert "When it fails" in (dag.doc_md or "")


def test_a_run_past_12_minutes_raises_a_deadline_alert(dagbag: Any) -> None:
    dag = dagbag.dags[DAG_ID]
    deadlines = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert len(deadlines) == 1
    alert = deadlines[0]
    assert type(alert.reference).__name__ == "DagRunQueuedAtDeadline"
    assert alert.interval == timedelta(minutes=12)
    assert alert.callback.path == "smart_access.callbacks.on_run_deadline"
    assert alert.interval < dag.dagrun_timeout  # it warns before the timeout fails the run


def test_tasks_retry_time_out_and_alert(dagbag: Any) -> None:
    dag = dagbag.dags[DAG_ID]
    assert {t.task_id for t in dag.tasks} == {
        "check_consumer_lag",
        "check_raw_freshness",
        "source_freshness",
        "build_models",
        "record_run",
    }
    for task in dag.tasks:
        assert task.retries >= 1 and task.retry_delay >= timedelta(seconds=30), task.task_id
        assert task.execution_timeout is not None, task.task_id
        assert task.execution_timeout < timedelta(minutes=15), task.task_id
        callbacks = task.on_failure_callback or []
        names = {c.__name__ for c in (callbacks if isinstance(callbacks, list) else [callbacks])}
        assert "on_task_failure" in names, task.task_id


def test_order_gate_then_dbt_then_record(dagbag: Any) -> None:
    tasks = dagbag.dags[DAG_ID].task_dict
    assert tasks["source_freshness"].upstream_task_ids == {
        "check_consumer_lag",
        "check_raw_freshness",
    }
    assert tasks["build_models"].upstream_task_ids == {"source_freshness"}
    assert tasks["record_run"].upstream_task_ids == {"build_models"}
    assert tasks["record_run"].downstream_task_ids == set()


def test_assets_raw_to_every_mart_to_the_notifications(dagbag: Any) -> None:
    """build_models updates one asset per dbt mart (a new mart without an asset fails
    here); the notifications DAG is scheduled on fct_alerts, tasks retry and alert."""
    marts = {p.stem for p in (REPO_ROOT / "dbt_project" / "models" / "marts").rglob("*.sql")}
    tasks = dagbag.dags[DAG_ID].task_dict
    outlets = {a.name for a in tasks["build_models"].outlets}
    assert outlets == {f"marts.{m}" for m in marts}
    assert all(
        a.uri.startswith("postgres://warehouse:5432/smart_access/marts/")
        for a in tasks["build_models"].outlets
    )
    inlets = {a.name for a in tasks["check_raw_freshness"].inlets}
    assert {"raw.access_events", "raw.device_health"} <= inlets
    notify = dagbag.dags["smart_access_alert_notifications"]
    condition = notify.timetable.asset_condition
    assert {a.name for a in condition.objects} == {"marts.fct_alerts"}
    assert notify.max_active_runs == 1 and notify.is_paused_upon_creation is True
    for task in notify.tasks:
        assert task.retries >= 1 and task.execution_timeout is not None, task.task_id


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.stem)
def test_parsing_imports_no_heavy_clients(path: Path) -> None:
    """A DAG file alone must not pull in dbt, Kafka or database drivers (the DLQ
    watcher's trigger included: its Kafka consumer lives in the triggerer only)."""
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "heavy = [m for m in ('dbt', 'confluent_kafka', 'smart_access.pipeline') "
        "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'plugins'}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://nobody:x@127.0.0.1:1/none",
    }
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
