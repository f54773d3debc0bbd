"""
### smart_access_streaming_pipeline

Every 15 minutes (UTC), for the data interval that just ended:

1. **Ingestion gate** — `check_consumer_lag` measures the `smart-access-sink`
   consumer group's lag on every partition of `smart-access.events`, `.health` and
   `.devices` (Kafka connection `smart_access_kafka`); `check_raw_freshness` measures
   the age of the newest row of `raw.access_events` and `raw.device_health` at the
   interval's end (PostgreSQL connection `smart_access_postgres`). Both are recorded
   (`ops.pipeline_consumer_lag`, `ops.pipeline_raw_freshness`); thresholds decide:
   total lag ≥ `SMART_ACCESS_LAG_WARN_MESSAGES` (100 000) warns, ≥
   `SMART_ACCESS_LAG_FAIL_MESSAGES` (1 000 000) fails; newest row older than
   `SMART_ACCESS_FRESHNESS_WARN_SECONDS` (300) warns, older than
   `SMART_ACCESS_FRESHNESS_FAIL_SECONDS` (1800) fails. Warnings go to
   `ops.pipeline_alerts` and the run goes on.
2. **`source_freshness`** — `dbt source freshness`.
3. **`build_models`** — one `dbt build`: incremental models, snapshots and tests.
4. **`record_run`** — closes the run record in `ops.pipeline_runs`: data interval,
   rows per mart, tests passed/failed, duration.

Assets: the gate reads the raw tables (`raw.*` inlets); `build_models` updates one
asset per mart (`marts.*` outlets), each event carrying the rows it wrote and the
watermark. `smart_access_alert_notifications` is scheduled on `marts.fct_alerts`.

A run still going `SMART_ACCESS_RUN_DEADLINE_MINUTES` (12) after it was queued raises a
deadline alert (a warning in `ops.pipeline_alerts` and on the webhook), before the
14-minute `dagrun_timeout` fails it.

### When it fails

The failed task is red in the grid; its log says why in one line, and the failure
callback writes a row to `ops.pipeline_alerts` (and POSTs to
`SMART_ACCESS_ALERT_WEBHOOK_URL` if set). `ops.pipeline_runs.failed_nodes` names the
dbt models or tests that failed.

- **Gate failed, lag** — the consumer is down or too slow: `make status`, look at
  `.stack/logs/consumer.log`, start more consumers. The next run re-checks.
- **Gate failed, freshness** — nothing landed recently: is the producer running, is
  the consumer stuck on a database error?
- **`build_models` failed** — the log lists the failing models/tests; run
  `make transform` (or `dbt build --select <node>`) to reproduce, fix the model or the
  data, then *Clear* the failed task to rerun the interval (tasks are rerunnable).
- A model or test failure is not retried (data does not change on retry); a lost
  connection is retried twice, one minute apart.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

# the same classes airflow.sdk exports lazily (mypy cannot see those)
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from smart_access.assets import MART_ASSETS, RAW_ASSETS
from smart_access.callbacks import on_task_failure

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    # Shorter than the 15-minute interval, so a stuck task cannot overlap the next run.
    "execution_timeout": timedelta(minutes=10),
    "on_failure_callback": on_task_failure,
}


def _run_deadline() -> DeadlineAlert | None:
    """SMART_ACCESS_RUN_DEADLINE_MINUTES (12); 0 turns it off (needed for `airflow dags
    test` of this DAG on Airflow 3.3.2, which fails a successful run with a deadline)."""
    minutes = float(os.environ.get("SMART_ACCESS_RUN_DEADLINE_MINUTES", "12"))
    if minutes <= 0:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        callback=AsyncCallback("smart_access.callbacks.on_run_deadline"),
    )


@dag(
    dag_id="smart_access_streaming_pipeline",
    # A real [start, end) interval per run (plain cron runs have start == end).
    schedule=CronDataIntervalTimetable("*/15 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=14),
    # a run still going 12 minutes after it was queued: a warning (ops.pipeline_alerts,
    # the webhook) before the next interval is due; the run goes on until its timeout
    deadline=_run_deadline(),
    is_paused_upon_creation=True,
    default_args=DEFAULT_ARGS,
    tags=["smart-access", "streaming", "dbt", "kafka"],
    doc_md=__doc__,
)
def smart_access_streaming_pipeline() -> None:
    @task(execution_timeout=timedelta(minutes=3))
    def check_consumer_lag(**context: Any) -> dict[str, Any]:
        from smart_access import pipeline

        return pipeline.check_consumer_lag(context)

    @task(execution_timeout=timedelta(minutes=3), inlets=list(RAW_ASSETS.values()))
    def check_raw_freshness(**context: Any) -> dict[str, Any]:
        from smart_access import pipeline

        return pipeline.check_raw_freshness(context)

    @task(execution_timeout=timedelta(minutes=5))
    def source_freshness(**context: Any) -> dict[str, Any]:
        from smart_access import pipeline

        return pipeline.source_freshness(context)

    # one asset event per mart on success, with the rows written and the watermark
    @task(outlets=list(MART_ASSETS.values()))
    def build_models(**context: Any) -> dict[str, Any]:
        from smart_access import pipeline

        return pipeline.build_models(context)

    @task(execution_timeout=timedelta(minutes=2))
    def record_run(**context: Any) -> dict[str, Any]:
        from smart_access import pipeline

        return pipeline.record_success(context)

    gate = [check_consumer_lag(), check_raw_freshness()]
    freshness = source_freshness()
    build = build_models()
    gate >> freshness >> build >> record_run()


smart_access_streaming_pipeline()
