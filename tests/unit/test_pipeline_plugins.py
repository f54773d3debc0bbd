"""The pipeline's plugins without services: thresholds, settings, dbt result mapping,
run identity, alert payloads, and how Airflow's plugin loader sees the folder."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from smart_access import pipeline
from smart_access.callbacks import alert_payload, send_webhook
from smart_access.dbt import DbtBuildResult, NodeResult
from smart_access.ingestion import (
    GateResult,
    PartitionLag,
    TableFreshness,
    evaluate_freshness,
    evaluate_lag,
    worst,
)
from smart_access.settings import PipelineSettings
from stack.config import REPO_ROOT
from tests.pipeline_support import webhook_receiver

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def lag(partition: int, lag_: int, committed: int | None = 0) -> PartitionLag:
    end = (committed or 0) + lag_
    return PartitionLag("smart-access.events", partition, committed, end, lag_)


def fresh(table: str, age: float | None, gated: bool = True) -> TableFreshness:
    last = None if age is None else T0 - timedelta(seconds=age)
    return TableFreshness(f"raw.{table}", last, age, 10, gated)


@pytest.mark.parametrize(
    ("lags", "status"),
    [
        ([lag(0, 10), lag(1, 20)], "ok"),
        ([lag(0, 60), lag(1, 40)], "warn"),  # total 100 reaches warn
        ([lag(0, 999), lag(1, 1)], "fail"),  # total 1000 reaches fail
        ([lag(0, 5, committed=None)], "warn"),  # data the sink never committed on
        ([lag(0, 0, committed=None)], "ok"),  # an empty partition is no concern
        ([], "warn"),
    ],
)
def test_lag_thresholds(lags: list[PartitionLag], status: str) -> None:
    assert evaluate_lag(lags, warn_at=100, fail_at=1000).status == status


def test_lag_failure_names_the_worst_partition() -> None:
    result = evaluate_lag([lag(0, 10), lag(3, 2000)], warn_at=100, fail_at=1000)
    assert result.status == "fail"
    assert "smart-access.events[3] 2000" in result.reasons[0]


@pytest.mark.parametrize(
    ("items", "status"),
    [
        ([fresh("access_events", 10), fresh("device_health", 20)], "ok"),
        ([fresh("access_events", 10), fresh("device_health", 400)], "warn"),
        ([fresh("access_events", 4000), fresh("device_health", 10)], "fail"),
        ([fresh("access_events", None), fresh("device_health", 10)], "warn"),
        ([fresh("access_events", 10), fresh("device_registry", 99999, gated=False)], "ok"),
    ],
)
def test_freshness_thresholds(items: list[TableFreshness], status: str) -> None:
    assert evaluate_freshness(items, warn_after=300, fail_after=1800).status == status


def test_worst_keeps_every_reason() -> None:
    combined = worst(GateResult("warn", ["a"]), GateResult("ok"), GateResult("fail", ["b"]))
    assert combined == GateResult("fail", ["a", "b"])


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMART_ACCESS_LAG_WARN_MESSAGES", "5")
    monkeypatch.setenv("SMART_ACCESS_LAG_FAIL_MESSAGES", "50")
    monkeypatch.setenv("SMART_ACCESS_ALERT_WEBHOOK_URL", "https://hooks.example.com/x")
    settings = PipelineSettings()
    assert (settings.lag_warn_messages, settings.lag_fail_messages) == (5, 50)
    assert str(settings.alert_webhook_url) == "https://hooks.example.com/x"
    assert settings.dbt_project_dir == REPO_ROOT / "dbt_project"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SMART_ACCESS_LAG_WARN_MESSAGES", "2000000"),  # above the fail threshold
        ("SMART_ACCESS_FRESHNESS_FAIL_SECONDS", "-1"),
        ("SMART_ACCESS_ALERT_WEBHOOK_URL", "file:///etc/passwd"),
    ],
)
def test_settings_reject_nonsense(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        PipelineSettings()


def _node(name: str, kind: str, status: str, rows: int | None = None) -> NodeResult:
    return NodeResult(f"{kind}.smart_access.{name}", kind, name, status, rows, None, 0.1, None)


def test_dbt_result_maps_onto_the_run_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMART_ACCESS_DBT_PROJECT_DIR", raising=False)
    nodes = (
        _node("stg_smart_access__access_events", "model", "success", rows=100),
        _node("fct_access_events", "model", "success", rows=7),
        _node("device_status_current", "model", "success", rows=3),
        _node("agg_access_daily", "model", "error"),
        _node("not_null_x", "test", "pass"),
        _node("unique_y", "test", "fail"),
    )
    result = DbtBuildResult(
        invocation_id="inv",
        return_code=1,
        success=False,
        elapsed_seconds=3.5,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3.5),
        nodes=nodes,
        tests_passed=1,
        tests_failed=1,
        failed_nodes=("agg_access_daily", "unique_y"),
    )
    outcome = pipeline._outcome(result)
    # Marts are told apart by folder, not by prefix: device_status_current counts.
    assert outcome.rows_per_mart == {"fct_access_events": 7, "device_status_current": 3}
    assert outcome.model_results["stg_smart_access__access_events"] == {
        "status": "success",
        "rows": 100,
        "type": "model",
    }
    assert (outcome.models_succeeded, outcome.models_failed) == (3, 1)
    assert (outcome.tests_passed, outcome.tests_failed) == (1, 1)
    assert outcome.failed_nodes == ["agg_access_daily", "unique_y"]
    assert outcome.success is False and outcome.duration_seconds == 3.5
    assert outcome.error == "dbt exited with 1"


def test_run_key_uses_the_data_interval() -> None:
    dag_run = SimpleNamespace(dag_id="d", run_id="r", start_date=T0, run_after=T0)
    context = {
        "dag_run": dag_run,
        "data_interval_start": T0 - timedelta(minutes=15),
        "data_interval_end": T0,
    }
    key = pipeline.run_key(context)
    assert (key.interval_start, key.interval_end) == (T0 - timedelta(minutes=15), T0)


def test_run_key_of_a_manual_run_without_interval_covers_15_minutes() -> None:
    dag_run = SimpleNamespace(
        dag_id="d", run_id="manual", start_date=T0, run_after=T0, data_interval_start=None
    )
    key = pipeline.run_key({"dag_run": dag_run})
    assert key.interval_end == T0 and key.interval_start == T0 - timedelta(minutes=15)


def test_webhook_posts_the_alert_to_a_real_endpoint() -> None:
    payload = alert_payload(
        dag_id="d",
        run_id="r",
        task_id="build_models",
        summary="2 tests failed",
        detail=None,
        log_url=None,
    )
    with webhook_receiver() as (url, received):
        assert send_webhook(url, payload) == "sent: HTTP 200"
    assert received == [payload]
    assert "build_models" in received[0]["text"]


def test_webhook_problems_are_reported_not_raised() -> None:
    assert send_webhook("ftp://example.com/x", {}).startswith("refused")
    assert send_webhook("http://127.0.0.1:1/x", {}, timeout=2).startswith("failed")


def test_airflow_plugin_loader_skips_the_helper_package(tmp_path) -> None:
    """Airflow imports every .py in the plugins folder by its bare file name; a helper
    named `dbt.py` would then replace the real `dbt` package in the scheduler.
    `.airflowignore` keeps the helper package out of that loader."""
    from airflow._shared.plugins_manager.plugins_manager import (
        _load_plugins_from_plugin_directory,
    )

    before = set(sys.modules)
    _plugins, errors = _load_plugins_from_plugin_directory(str(REPO_ROOT / "plugins"))
    loaded = set(sys.modules) - before
    assert errors == {}
    assert not {"pipeline", "callbacks", "records", "dbt", "settings"} & loaded
    assert os.path.exists(REPO_ROOT / "plugins" / ".airflowignore")
