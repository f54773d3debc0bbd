"""Failure callback of the pipeline's tasks: alert row, run record, optional webhook.

`on_task_failure` runs when a task has failed for good (after its retries). It logs
one clear line, marks the run record failed, writes an `ops.pipeline_alerts` row and,
when `SMART_ACCESS_ALERT_WEBHOOK_URL` is set, POSTs a JSON alert there. A callback
must never raise: each step that fails is logged and the next still runs.

This module is imported when the DAG file is parsed, so it imports nothing heavy
at module level.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "alert_payload",
    "event_dag_settings",
    "on_run_deadline",
    "on_task_failure",
    "send_webhook",
]

logger = logging.getLogger(__name__)

_DETAIL_LIMIT = 4000


def alert_payload(
    *,
    dag_id: str,
    run_id: str | None,
    task_id: str | None,
    summary: str,
    detail: str | None,
    log_url: str | None,
) -> dict[str, Any]:
    """JSON body of the webhook; `text` makes it readable in Slack-compatible receivers."""
    return {
        "text": f":red_circle: {dag_id} failed at {task_id}: {summary}",
        "severity": "error",
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "summary": summary,
        "detail": detail,
        "log_url": log_url,
    }


def send_webhook(url: str, payload: dict[str, Any], timeout: float = 5.0) -> str:
    """POST `payload`; returns a short status for the alert row, never raises."""
    if not url.startswith(("http://", "https://")):
        return "refused: webhook URL must be http(s)"
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return f"sent: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"failed: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"failed: {exc}"[:200]


def _summary(exception: BaseException | None) -> tuple[str, str | None]:
    if exception is None:
        return "task failed (no exception recorded)", None
    text = str(exception).strip() or type(exception).__name__
    first, _, rest = text.partition("\n")
    return f"{type(exception).__name__}: {first}"[:500], (text[:_DETAIL_LIMIT] if rest else None)


def _settings_or_defaults() -> Any:
    """An alert must still go out with broken settings: then the default connection
    ids and no webhook, and the reason in the log."""
    from smart_access.settings import PipelineSettings

    try:
        return PipelineSettings()
    except Exception:
        logger.exception("pipeline settings are invalid; no webhook and default connection ids")
        return PipelineSettings.model_construct()


def on_task_failure(context: dict[str, Any]) -> None:
    from smart_access.pipeline import postgres_connection, run_key
    from smart_access.records import fail_run, write_alert

    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or "unknown"
    task_id = getattr(ti, "task_id", None)
    run_id = getattr(ti, "run_id", None)
    try_number = getattr(ti, "try_number", None)
    log_url = getattr(ti, "log_url", None)
    summary, detail = _summary(context.get("exception"))
    logger.error(
        "PIPELINE FAILURE dag=%s run=%s task=%s try=%s: %s",
        dag_id,
        run_id,
        task_id,
        try_number,
        summary,
    )
    settings = _settings_or_defaults()
    webhook_status = "not configured"
    if settings.alert_webhook_url is not None:
        payload = alert_payload(
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            summary=summary,
            detail=detail,
            log_url=log_url,
        )
        webhook_status = send_webhook(str(settings.alert_webhook_url), payload)
        logger.info("alert webhook: %s", webhook_status)
    try:
        conn = postgres_connection(settings)
    except Exception:
        logger.exception("could not connect to write the alert row")
        return
    try:
        try:
            fail_run(conn, run_key(context), task_id or "unknown", summary, datetime.now(UTC))
        except Exception:
            conn.rollback()
            logger.exception("could not mark the run record failed")
        alert_id = write_alert(
            conn,
            severity="error",
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            try_number=try_number,
            summary=summary,
            detail=detail,
            log_url=log_url,
            webhook_status=webhook_status,
        )
        logger.error("alert %s written to ops.pipeline_alerts", alert_id)
    except Exception:
        logger.exception("could not write the alert row")
    finally:
        conn.close()


async def on_run_deadline(context: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    """Deadline callback of the pipeline DAG (runs in the triggerer): the run is still
    going `SMART_ACCESS_RUN_DEADLINE_MINUTES` after it was queued. A warning row in
    ops.pipeline_alerts and the webhook; the run itself goes on (dagrun_timeout ends it)."""
    import asyncio

    await asyncio.to_thread(_deadline_missed, context or {})


def _deadline_missed(context: dict[str, Any]) -> None:
    from smart_access.pipeline import postgres_connection
    from smart_access.records import write_alert

    run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id = str(run.get("dag_id") or "unknown")
    run_id = run.get("dag_run_id") or run.get("run_id")
    summary = (
        f"run {run_id} of {dag_id} is still going at its deadline "
        f"{deadline.get('deadline_time')} (queued {run.get('queued_at')})"
    )
    logger.error("PIPELINE DEADLINE %s", summary)
    settings = _settings_or_defaults()
    webhook_status = "not configured"
    if settings.alert_webhook_url is not None:
        payload = {
            "text": f":warning: {summary}",
            "severity": "warning",
            "kind": "run_deadline",
            "dag_id": dag_id,
            "run_id": run_id,
            "summary": summary,
        }
        webhook_status = send_webhook(str(settings.alert_webhook_url), payload)
    conn = postgres_connection(settings)
    try:
        write_alert(
            conn,
            severity="warning",
            dag_id=dag_id,
            run_id=run_id,
            task_id=None,
            try_number=None,
            summary=summary,
            detail=None,
            log_url=None,
            webhook_status=webhook_status,
        )
    finally:
        conn.close()


def event_dag_settings(retry_delay: timedelta) -> dict[str, Any]:
    """`@dag(...)` settings the event-driven DAGs share (notifications, triage): one
    run at a time, paused at first, no catch-up, and tasks that retry and alert."""
    import pendulum

    return {
        "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
        "catchup": False,
        "max_active_runs": 1,
        "is_paused_upon_creation": True,
        "default_args": {
            "owner": "data-platform",
            "retries": 2,
            "retry_delay": retry_delay,
            "execution_timeout": timedelta(minutes=5),
            "on_failure_callback": on_task_failure,
        },
    }
