"""A watcher on the dead-letter topic and the triage of a burst.

`DeadLetterBurstTrigger` backs the AssetWatcher of the asset `smart-access.dlq burst`
(DAG `smart_access_dead_letter_triage`). It runs on the Kafka provider's shared-stream
producer (`KafkaSharedStreamProducer`: one consumer in the triggerer for every watcher
of the topic; offsets are committed only once the trigger event is saved, so a
triggerer crash loses nothing; the connection must set `enable.auto.commit=false`)
with its own consumer group, `smart-access-dlq-watcher`: it counts the dead letters
that arrive and fires once when `threshold` arrive within `window_seconds`, then stays
quiet for `cooldown_seconds` (one triage per burst, not one per message).

`triage` then describes the burst from `raw.dead_letters` (the consumer lands every
dead letter there with its Kafka coordinates): counts by kind and by producer key,
a few bounded payload samples, and each sample's verdict under today's contracts
(still refused, and why; or valid now, so a redrive would land it) — written to
`ops.dead_letter_triages` and posted to the webhook with the redrive command.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

__all__ = ["DeadLetterBurstTrigger", "triage"]

CLASSPATH = "smart_access.dead_letter_watch.DeadLetterBurstTrigger"
_SAMPLE_BYTES = 512


class DeadLetterBurstTrigger(BaseEventTrigger):
    """The provider's KafkaSharedStreamTrigger with a burst filter, written against
    BaseEventTrigger so the DAG file parses without importing the Kafka client (the
    producer is imported in the triggerer only)."""

    def __init__(
        self,
        *,
        topics: list[str],
        kafka_config_id: str,
        threshold: int = 100,
        window_seconds: float = 60.0,
        cooldown_seconds: float = 600.0,
        poll_timeout: float = 1.0,
    ) -> None:
        super().__init__()
        self.topics = sorted(topics)
        self.kafka_config_id = kafka_config_id
        self.poll_timeout = poll_timeout
        self.threshold = threshold
        self.window_seconds = window_seconds
        self.cooldown_seconds = cooldown_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "topics": self.topics,
                "kafka_config_id": self.kafka_config_id,
                "threshold": self.threshold,
                "window_seconds": self.window_seconds,
                "cooldown_seconds": self.cooldown_seconds,
                "poll_timeout": self.poll_timeout,
            },
        )

    def shared_stream_key(self) -> Any:
        """Watchers of the same topics through the same connection share a consumer."""
        return "smart-access-dlq-burst", tuple(self.topics), self.kafka_config_id

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> Any:
        from airflow.providers.apache.kafka.triggers.shared_stream import (
            KafkaSharedStreamProducer,
        )

        return KafkaSharedStreamProducer(
            topics=kwargs["topics"],
            kafka_config_id=kwargs["kafka_config_id"],
            poll_timeout=kwargs["poll_timeout"],
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Only through the triggerer's shared-stream manager (it owns the commits)."""
        raise NotImplementedError("DeadLetterBurstTrigger runs only as a shared stream")
        yield  # pragma: no cover - makes this an async generator

    async def filter_shared_stream(
        self, shared_stream: AsyncIterator[Any]
    ) -> AsyncIterator[TriggerEvent]:
        arrivals: collections.deque[float] = collections.deque()
        quiet_until = 0.0
        async for _value in shared_stream:
            now = time.monotonic()
            arrivals.append(now)
            while arrivals and arrivals[0] < now - self.window_seconds:
                arrivals.popleft()
            if len(arrivals) >= self.threshold and now >= quiet_until:
                seen = len(arrivals)
                arrivals.clear()
                quiet_until = now + self.cooldown_seconds
                # yielded before the next message is pulled: the offset of the one
                # that crossed the line is committed only once this event is saved
                yield TriggerEvent(
                    {
                        "dead_letters": seen,
                        "window_seconds": self.window_seconds,
                        "detected_at": datetime.now(UTC).isoformat(),
                    }
                )


def _text(payload: bytes | memoryview | None) -> str:
    """A bounded, printable preview of a payload."""
    if payload is None:
        return ""
    raw = bytes(payload)
    shown = raw[:_SAMPLE_BYTES].decode("utf-8", errors="replace")
    return shown + ("…" if len(raw) > _SAMPLE_BYTES else "")


def triage(
    conn: Any,
    *,
    detected_at: datetime,
    window_seconds: float,
    run_id: str,
    samples: int = 5,
) -> dict[str, Any]:
    """Describe the burst that ended at `detected_at` and record it (see the module)."""
    from streaming.contracts import Invalid, Validator

    since = detected_at - timedelta(seconds=max(window_seconds, 60) * 2)
    until = datetime.now(UTC)
    with conn, conn.cursor() as cur:
        cur.execute(
            """
            select error_kind, count(*) from raw.dead_letters
            where _ingested_at >= %s and _ingested_at <= %s
            group by 1 order by 2 desc
            """,
            (since, until),
        )
        by_kind = dict(cur.fetchall())
        cur.execute(
            """
            select encode(coalesce(kafka_key, ''::bytea), 'escape'), count(*)
            from raw.dead_letters
            where _ingested_at >= %s and _ingested_at <= %s
            group by 1 order by 2 desc limit 10
            """,
            (since, until),
        )
        by_key = {str(k)[:64]: n for k, n in cur.fetchall()}
        cur.execute(
            """
            select distinct on (error_kind) kafka_topic, kafka_partition, kafka_offset,
                   error_kind, error_detail, payload
            from raw.dead_letters
            where _ingested_at >= %s and _ingested_at <= %s
            order by error_kind, _ingested_at desc
            limit %s
            """,
            (since, until, samples),
        )
        rows = cur.fetchall()
    validator = Validator()
    now = datetime.now(UTC)
    sampled = []
    for topic, partition, offset, kind, detail, payload in rows:
        verdict = validator.validate(topic, bytes(payload) if payload is not None else None, now)
        sampled.append(
            {
                "coordinates": f"{topic}[{partition}]@{offset}",
                "kind": kind,
                "detail": str(detail)[:300],
                "payload": _text(payload),
                "verdict_now": (
                    f"still refused: {verdict.kind}"
                    if isinstance(verdict, Invalid)
                    else "valid now"
                ),
            }
        )
    total = sum(by_kind.values())
    redrive = (
        "python -m streaming.redrive "
        + " ".join(f"--kind {k}" for k in by_kind)
        + f" --since {since.isoformat()} --dry-run"
    )
    report = {
        "dead_letters": total,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "by_kind": by_kind,
        "by_key": by_key,
        "samples": sampled,
        "redrive_command": redrive,
    }
    with conn, conn.cursor() as cur:
        cur.execute(
            """
            insert into ops.dead_letter_triages
                (dag_run_id, detected_at, since, until, dead_letters, by_kind, by_key, samples,
                 redrive_command)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (dag_run_id) do update set
                until = excluded.until, dead_letters = excluded.dead_letters,
                by_kind = excluded.by_kind, by_key = excluded.by_key,
                samples = excluded.samples, redrive_command = excluded.redrive_command
            """,
            (
                run_id,
                detected_at,
                since,
                until,
                total,
                json.dumps(by_kind),
                json.dumps(by_key),
                json.dumps(sampled),
                redrive,
            ),
        )
    return report
