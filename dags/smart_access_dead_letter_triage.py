"""
### smart_access_dead_letter_triage

Started by a burst of dead letters, not by a clock: an AssetWatcher on
`smart-access.dlq` (the triggerer's shared Kafka consumer, consumer group
`smart-access-dlq-watcher`, committing only once its event is saved) fires the asset
`smart-access.dlq burst` when `SMART_ACCESS_DLQ_BURST_THRESHOLD` dead letters (100)
arrive within `SMART_ACCESS_DLQ_BURST_WINDOW_SECONDS` (60), then stays quiet for
`SMART_ACCESS_DLQ_BURST_COOLDOWN_SECONDS` (600): one triage per burst — a firmware
release that changed the payload, say.

The triage counts the burst's dead letters in `raw.dead_letters` by kind and by
producer key, keeps a few bounded payload samples with their verdict under today's
contracts, writes it to `ops.dead_letter_triages` and posts it to the webhook
(`SMART_ACCESS_ALERT_WEBHOOK_URL`) with the redrive command to run once the contract
is fixed (`python -m streaming.redrive ...`, dry run first).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from smart_access.callbacks import event_dag_settings
from smart_access.dead_letter_watch import DeadLetterBurstTrigger

DLQ_TOPIC = "smart-access.dlq"

DLQ_BURST = Asset(
    name="smart-access.dlq burst",
    uri="kafka://warehouse/smart-access.dlq",
    group="kafka",
    watchers=[
        AssetWatcher(
            name="dead_letter_burst",
            trigger=DeadLetterBurstTrigger(
                topics=[DLQ_TOPIC],
                kafka_config_id="smart_access_kafka_dlq_watcher",
                threshold=int(os.environ.get("SMART_ACCESS_DLQ_BURST_THRESHOLD", "100")),
                window_seconds=float(os.environ.get("SMART_ACCESS_DLQ_BURST_WINDOW_SECONDS", "60")),
                cooldown_seconds=float(
                    os.environ.get("SMART_ACCESS_DLQ_BURST_COOLDOWN_SECONDS", "600")
                ),
            ),
        )
    ],
)


@dag(
    dag_id="smart_access_dead_letter_triage",
    schedule=[DLQ_BURST],
    **event_dag_settings(retry_delay=timedelta(seconds=30)),
    tags=["smart-access", "dead-letters", "kafka"],
    doc_md=__doc__,
)
def smart_access_dead_letter_triage() -> None:
    @task
    def triage_burst(**context: Any) -> dict[str, Any]:
        from smart_access import pipeline

        return pipeline.triage_dead_letters(context)

    triage_burst()


smart_access_dead_letter_triage()
