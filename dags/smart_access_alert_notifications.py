"""
### smart_access_alert_notifications

Runs after every successful build of the marts (scheduled on the `marts.fct_alerts`
asset that `smart_access_streaming_pipeline`'s `build_models` updates) and sends each
device alert that opened or closed since the previous run — door left open,
repeated failures, low battery, offline — once to the notifier: a webhook
(`SMART_ACCESS_NOTIFY_WEBHOOK_URL`, else `SMART_ACCESS_ALERT_WEBHOOK_URL`; the JSON
has a Slack-compatible `text` and a stable `notification_id`).

Exactly once per alert episode and transition: each is keyed by the episode's stable
`alert_id` in `ops.alert_notifications` and claimed before it is sent, so a retried
task or a repeated run sends nothing twice. Quiet hours hold warnings
(`SMART_ACCESS_NOTIFY_QUIET_HOURS`, critical alerts always go out); a household gets at
most `SMART_ACCESS_NOTIFY_MAX_PER_HOUSEHOLD_HOUR` notifications an hour (the rest are
recorded as throttled). The dashboard's Alerts page lists what was sent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from smart_access.assets import FCT_ALERTS
from smart_access.callbacks import event_dag_settings


@dag(
    dag_id="smart_access_alert_notifications",
    schedule=[FCT_ALERTS],
    **event_dag_settings(retry_delay=timedelta(minutes=1)),
    tags=["smart-access", "alerts", "notifications"],
    doc_md=__doc__,
)
def smart_access_alert_notifications() -> None:
    @task
    def notify_alerts(**context: Any) -> dict[str, int]:
        from smart_access import pipeline

        return pipeline.notify_alerts(context)

    notify_alerts()


smart_access_alert_notifications()
