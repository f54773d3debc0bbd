"""The bodies of the pipeline's tasks; the DAG file only wires them.

Each function takes the Airflow task context, does one step, writes its part of the
run record (`ops.pipeline_runs`, keyed by the DAG run) and returns a small summary
for XCom. A threshold breach or a failed dbt node raises `AirflowFailException`:
retrying cannot fix data, so the task fails at once and the failure callback writes
the alert. Errors that may pass (a broker or database briefly away) raise ordinary
exceptions and are retried.

The dbt call lives behind `transform()` and `source_freshness_status()` only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from smart_access import dbt as dbt_api
from smart_access.records import RunKey, TransformOutcome
from smart_access.settings import PipelineSettings

__all__ = [
    "build_models",
    "check_consumer_lag",
    "check_raw_freshness",
    "kafka_admin",
    "kafka_offsets_reader",
    "postgres_connection",
    "record_success",
    "run_key",
    "source_freshness",
    "transform",
]

logger = logging.getLogger(__name__)

INTERVAL = timedelta(minutes=15)


def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


# --- context and connections --------------------------------------------------------------


def run_key(context: dict[str, Any]) -> RunKey:
    """The run's identity and data interval; a run without one covers the last 15 min."""
    dag_run = context["dag_run"]
    start = context.get("data_interval_start") or getattr(dag_run, "data_interval_start", None)
    end = context.get("data_interval_end") or getattr(dag_run, "data_interval_end", None)
    if end is None:
        end = getattr(dag_run, "run_after", None) or datetime.now(UTC)
    if start is None or start >= end:
        start = end - INTERVAL
    started = getattr(dag_run, "start_date", None) or datetime.now(UTC)
    return RunKey(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        interval_start=start,
        interval_end=end,
        run_started_at=started,
    )


def postgres_connection(settings: PipelineSettings) -> Any:
    """A psycopg2 connection from the Postgres provider's connection.

    The provider's own `get_conn()` returns psycopg 3 when it is installed; the
    platform's SQL helpers speak psycopg2, so only the connection's fields are used.
    """
    import psycopg2
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=settings.postgres_conn_id)
    conn = hook.get_connection(settings.postgres_conn_id)
    return psycopg2.connect(
        host=conn.host,
        port=conn.port or 5432,
        user=conn.login,
        password=conn.password,
        dbname=conn.schema,
        connect_timeout=10,
        application_name="airflow-smart-access",
    )


def kafka_admin(settings: PipelineSettings) -> Any:
    from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook

    return KafkaAdminClientHook(kafka_config_id=settings.kafka_conn_id).get_conn


def kafka_offsets_reader(
    settings: PipelineSettings, group: str, refused: list[str] | None = None
) -> Any:
    """A Consumer of `group` that only reads its committed offsets (it never subscribes,
    so it does not join the group or trigger a rebalance). A refused login or an
    untrusted certificate is appended to `refused` as one line naming what to fix."""
    from airflow.providers.apache.kafka.hooks.client import KafkaAdminClientHook
    from confluent_kafka import Consumer

    from streaming.clients import refusal

    hint = f"KAFKA_AIRFLOW_PASSWORD (sasl.password of connection {settings.kafka_conn_id})"

    def on_error(err: Any) -> None:
        reason = refusal(err, hint)
        if reason and refused is not None and not refused:
            refused.append(reason)

    connection = KafkaAdminClientHook.get_connection(settings.kafka_conn_id)
    config = {
        **connection.extra_dejson,
        "group.id": group,
        "enable.auto.commit": False,
        "client.id": "airflow-lag-gate",
        "error_cb": on_error,
    }
    return Consumer(config)


def read_consumer_lag(
    settings: PipelineSettings, group: str, topics: Sequence[str], timeout: float = 15.0
) -> list[Any]:
    """`group`'s lag on `topics` through the Airflow connection; a refused login or an
    untrusted certificate fails the task with one line instead of a timeout."""
    from smart_access.ingestion import measure_consumer_lag

    refused: list[str] = []
    reader = kafka_offsets_reader(settings, group, refused)
    try:
        return measure_consumer_lag(kafka_admin(settings), reader, topics, timeout)
    except Exception:
        for _ in range(10):  # the client reports why on its next poll
            if refused:
                break
            reader.poll(0.2)
        if refused:  # retrying will not help: fail with the line that says what to fix
            raise _fail(refused[0]) from None
        raise
    finally:
        reader.close()


def _warn(conn: Any, key: RunKey, task_id: str, reasons: list[str]) -> None:
    from smart_access.records import write_alert

    summary = "; ".join(reasons)
    logger.warning("ingestion gate warning: %s", summary)
    write_alert(
        conn,
        severity="warning",
        dag_id=key.dag_id,
        run_id=key.run_id,
        task_id=task_id,
        summary=summary[:500],
    )


# --- 1. ingestion gate ---------------------------------------------------------------------


def check_consumer_lag(context: dict[str, Any]) -> dict[str, Any]:
    from smart_access.ingestion import evaluate_lag
    from smart_access.records import record_lag
    from streaming.topics import CONSUMER_GROUP, DATA_TOPICS

    settings = PipelineSettings()
    key = run_key(context)
    lags = read_consumer_lag(settings, CONSUMER_GROUP, DATA_TOPICS)
    for item in lags:
        logger.info(
            "lag %s[%d]: committed %s, end %d, lag %d",
            item.topic,
            item.partition,
            item.committed_offset,
            item.end_offset,
            item.lag,
        )
    gate = evaluate_lag(lags, settings.lag_warn_messages, settings.lag_fail_messages)
    conn = postgres_connection(settings)
    try:
        record_lag(conn, key, CONSUMER_GROUP, lags, gate)
        if gate.status == "warn":
            _warn(conn, key, "check_consumer_lag", gate.reasons)
    finally:
        conn.close()
    total = sum(item.lag for item in lags)
    logger.info("consumer group %s: total lag %d -> %s", CONSUMER_GROUP, total, gate.status)
    if gate.status == "fail":
        raise _fail("ingestion gate failed: " + "; ".join(gate.reasons))
    return {"status": gate.status, "total_lag": total, "reasons": gate.reasons}


def check_raw_freshness(context: dict[str, Any]) -> dict[str, Any]:
    from smart_access.ingestion import evaluate_freshness, measure_raw_freshness
    from smart_access.records import record_freshness

    settings = PipelineSettings()
    key = run_key(context)
    lookback = timedelta(seconds=settings.freshness_fail_seconds) + INTERVAL
    conn = postgres_connection(settings)
    try:
        with conn.cursor() as cur:
            items = measure_raw_freshness(cur, key.interval_start, key.interval_end, lookback)
        conn.rollback()
        for item in items:
            logger.info(
                "%s: newest row %s (age %s s), %d rows in [%s, %s)",
                item.table_name,
                item.last_ingested_at,
                None if item.age_seconds is None else round(item.age_seconds),
                item.rows_in_interval,
                key.interval_start,
                key.interval_end,
            )
        gate = evaluate_freshness(
            items, settings.freshness_warn_seconds, settings.freshness_fail_seconds
        )
        record_freshness(conn, key, items, gate)
        if gate.status == "warn":
            _warn(conn, key, "check_raw_freshness", gate.reasons)
    finally:
        conn.close()
    if gate.status == "fail":
        raise _fail("ingestion gate failed: " + "; ".join(gate.reasons))
    return {
        "status": gate.status,
        "rows_in_interval": {i.table_name: i.rows_in_interval for i in items},
        "reasons": gate.reasons,
    }


# --- 2. dbt source freshness ----------------------------------------------------------------


def source_freshness_status() -> str:
    """dbt's source freshness: pass | warn | error (a source past error_after)."""
    result = dbt_api.run_source_freshness()
    return "error" if not result.success else result.worst_status


def source_freshness(context: dict[str, Any]) -> dict[str, Any]:
    from smart_access.records import record_source_freshness

    settings = PipelineSettings()
    key = run_key(context)
    status = source_freshness_status()
    logger.info("dbt source freshness: %s", status)
    conn = postgres_connection(settings)
    try:
        record_source_freshness(conn, key, status)
    finally:
        conn.close()
    if status == "error":
        raise _fail("dbt source freshness: a source is past its error_after threshold")
    return {"status": status}


# --- 3. incremental models and tests ------------------------------------------------------


def _mart_names() -> set[str]:
    """Models that live in dbt_project/models/marts (their names carry no common prefix)."""
    return {p.stem for p in (dbt_api.project_dir() / "models" / "marts").rglob("*.sql")}


def _outcome(result: dbt_api.DbtBuildResult) -> TransformOutcome:
    """Map the DbtBuildResult onto the run record."""
    built = [n for n in result.nodes if n.resource_type in {"model", "snapshot"}]
    marts = _mart_names()
    models = {
        n.name: {"status": n.status, "rows": n.rows_affected, "type": n.resource_type}
        for n in built
    }
    rows_per_mart = {
        n.name: int(n.rows_affected or 0)
        for n in built
        if n.name in marts and n.status == "success"
    }
    return TransformOutcome(
        success=bool(result.success),
        model_results=models,
        rows_per_mart=rows_per_mart,
        models_succeeded=sum(1 for n in built if n.status == "success"),
        models_failed=sum(1 for n in built if n.status in {"error", "fail"}),
        tests_passed=int(result.tests_passed),
        tests_failed=int(result.tests_failed),
        failed_nodes=list(result.failed_nodes),
        duration_seconds=float(result.elapsed_seconds),
        error=None if result.success else f"dbt exited with {result.return_code}",
    )


def transform(key: RunKey) -> TransformOutcome:
    """One `dbt build` (models, snapshots, tests) for the run's data interval, run in
    this process with each node logged as it finishes. A task cleared after some nodes
    failed resumes that build with `dbt retry` (only the failed and skipped nodes, the
    same window) instead of rebuilding everything."""
    variables = {
        "data_interval_start": key.interval_start.isoformat(),
        "data_interval_end": key.interval_end.isoformat(),
    }
    # in the task's own process (dbtRunner): one build per task process
    return _outcome(dbt_api.run_dbt_build(vars=variables, resume_key=key.run_id, in_process=True))


def build_models(context: dict[str, Any]) -> dict[str, Any]:
    from smart_access.records import record_transform

    settings = PipelineSettings()
    key = run_key(context)
    outcome = transform(key)
    for name, model in outcome.model_results.items():
        logger.info("model %s: %s, %s rows", name, model["status"], model["rows"])
    logger.info(
        "dbt build in %.1fs: %d models ok, %d failed; tests %d passed, %d failed",
        outcome.duration_seconds,
        outcome.models_succeeded,
        outcome.models_failed,
        outcome.tests_passed,
        outcome.tests_failed,
    )
    conn = postgres_connection(settings)
    try:
        record_transform(conn, key, outcome)
    finally:
        conn.close()
    if outcome.success:
        _asset_events(context, outcome)
    if not outcome.success:
        if outcome.failed_nodes:
            raise _fail(
                f"dbt build failed: {outcome.tests_failed} test(s) and "
                f"{outcome.models_failed} model(s) failed: {', '.join(outcome.failed_nodes)}"
            )
        # No node failed: dbt itself did not run through (connection, crash); retry.
        raise RuntimeError(f"dbt build did not complete: {outcome.error}")
    return {
        "rows_per_mart": outcome.rows_per_mart,
        "tests_passed": outcome.tests_passed,
        "duration_seconds": outcome.duration_seconds,
    }


def _asset_events(context: dict[str, Any], outcome: TransformOutcome) -> None:
    """Each mart's asset event says what this build did to it: rows written and the
    data watermark (how far raw has been transformed)."""
    from smart_access.assets import MART_ASSETS
    from smart_access.watermarks import read_watermarks

    outlet_events = context.get("outlet_events")
    if outlet_events is None:  # called outside a task (make transform)
        return
    settings = PipelineSettings()
    conn = postgres_connection(settings)
    try:
        watermarks = read_watermarks(conn)
    finally:
        conn.close()
    key = run_key(context)
    for name, asset in MART_ASSETS.items():
        outlet_events[asset].extra = {
            "rows_written": int(outcome.rows_per_mart.get(name, 0)),
            "ingested_through": watermarks,
            "data_interval_end": key.interval_end.isoformat(),
            "dag_run_id": key.run_id,
        }


# --- 4. run record -------------------------------------------------------------------------


def record_success(context: dict[str, Any]) -> dict[str, Any]:
    from smart_access.records import finish_run, start_run

    settings = PipelineSettings()
    key = run_key(context)
    conn = postgres_connection(settings)
    try:
        start_run(conn, key)
        duration = finish_run(conn, key, datetime.now(UTC))
    finally:
        conn.close()
    logger.info(
        "run %s succeeded in %.1fs for [%s, %s)",
        key.run_id,
        duration,
        key.interval_start,
        key.interval_end,
    )
    return {"run_id": key.run_id, "duration_seconds": duration}


# --- alert notifications (DAG smart_access_alert_notifications) ----------------------------


def notify_alerts(context: dict[str, Any]) -> dict[str, int]:
    """Send the alerts that opened or closed since the last run (smart_access.notifications)."""
    from pydantic import ValidationError

    from smart_access.callbacks import send_webhook
    from smart_access.notifications import NotifySettings, notify

    try:
        settings = NotifySettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "SMART_ACCESS_NOTIFY_" + str(first["loc"][0]).upper() if first["loc"] else "?"
        raise _fail(f"{name}: {first['msg']}") from None
    if settings.webhook_url is None:
        settings.webhook_url = PipelineSettings().alert_webhook_url
    conn = postgres_connection(PipelineSettings())
    try:
        outcome = notify(conn, settings, send_webhook, run_id=str(context["run_id"]))
    finally:
        conn.close()
    logger.info(
        "alert notifications: %s",
        ", ".join(f"{n} {status}" for status, n in sorted(outcome.items()) if n) or "nothing new",
    )
    return dict(outcome)


# --- dead-letter triage (DAG smart_access_dead_letter_triage) ------------------------------


def triage_dead_letters(context: dict[str, Any]) -> dict[str, Any]:
    """Describe the burst the watcher saw and post it (smart_access.dead_letter_watch)."""
    from smart_access.callbacks import send_webhook
    from smart_access.dead_letter_watch import triage

    detected_at = datetime.now(UTC)
    window = 60.0
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            found = (event.extra or {}).get("payload") or {}
            if "detected_at" in found:
                detected_at = datetime.fromisoformat(found["detected_at"])
                window = float(found.get("window_seconds", window))
    settings = PipelineSettings()
    run_id = str(context["run_id"])
    conn = postgres_connection(settings)
    try:
        report = triage(conn, detected_at=detected_at, window_seconds=window, run_id=run_id)
        status = "not configured"
        if settings.alert_webhook_url is not None:
            kinds = ", ".join(f"{n} {k}" for k, n in report["by_kind"].items())
            status = send_webhook(
                str(settings.alert_webhook_url),
                {
                    "text": (
                        f"[dead letters] {report['dead_letters']} since {report['since']}: "
                        f"{kinds}. Once the contract is fixed: {report['redrive_command']}"
                    ),
                    "kind": "dead_letter_triage",
                    "dag_run_id": run_id,
                    **report,
                },
            )
        with conn, conn.cursor() as cur:
            cur.execute(
                "update ops.dead_letter_triages set webhook_status = %s where dag_run_id = %s",
                (status, run_id),
            )
    finally:
        conn.close()
    logger.info(
        "dead-letter burst: %d since %s by kind %s; webhook %s; then: %s",
        report["dead_letters"],
        report["since"],
        report["by_kind"],
        status,
        report["redrive_command"],
    )
    return {"dead_letters": report["dead_letters"], "by_kind": report["by_kind"]}
