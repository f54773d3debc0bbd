"""When a batch closes: on size, on time, or as soon as the consumer has caught up.

A caught-up consumer (every assigned partition read to its end) hands its batch to the
writer as soon as the writer is free instead of waiting out --batch-timeout, so
latency at a steady rate is the commit's, not the timeout's; under a backlog the
batches still fill to --batch-size."""

from __future__ import annotations

import json
import time

from ingest_helpers import (
    counts,
    event,
    new_prefix,
    produce,
    query,
    start_consumer,
    stop_consumer,
    wait_until,
)

from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.simulator import Simulator, SimulatorConfig

TIMEOUT = 8.0  # far longer than a commit takes


def test_a_caught_up_batch_lands_without_waiting_for_its_timeout(
    kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    prefix = new_prefix(kafka)
    consumer, thread = start_consumer(kafka, pg, prefix, batch_size=20_000, batch_timeout=TIMEOUT)
    try:
        wait_until(
            lambda: bool(consumer.assignment) and consumer.assignment <= consumer.drained,
            30,
            "every assigned partition read to its end",
        )
        for n in range(3):
            produced_at = time.monotonic()
            produce(kafka, prefix, [("smart-access.events", b"dev-1", event_bytes(n))])
            wait_until(
                lambda n=n: counts(pg, prefix)["access_events"] == n + 1, TIMEOUT, "the event"
            )
            waited = time.monotonic() - produced_at
            assert waited < TIMEOUT / 2, f"event {n} waited {waited:.1f}s for its batch"
    finally:
        stop_consumer(consumer, thread)
    ((batches,),) = query(
        pg,
        "select count(*) from ops.ingest_batches where consumer_group = %s",
        (prefix + "sink",),
    )
    assert batches == 3


def test_a_backlog_still_fills_whole_batches(kafka: EphemeralKafka, pg: EphemeralPostgres) -> None:
    prefix = new_prefix(kafka)
    sim = Simulator(SimulatorConfig(households=50, rate=1000, seed=5))
    messages = [sim.next() for _ in range(30_000)]
    produce(kafka, prefix, ((m.topic, m.key, m.value) for m in messages))
    consumer, thread = start_consumer(kafka, pg, prefix, batch_size=10_000, batch_timeout=TIMEOUT)
    try:
        wait_until(lambda: sum(counts(pg, prefix).values()) == 30_000, 120, "the backlog")
    finally:
        stop_consumer(consumer, thread)
    sizes = [
        size
        for (size,) in query(
            pg,
            "select events_valid + events_invalid + health_valid + health_invalid"
            " + devices_valid + devices_invalid from ops.ingest_batches"
            " where consumer_group = %s order by batch_id",
            (prefix + "sink",),
        )
    ]
    assert sum(sizes) == 30_000
    # whole batches but the last few, where the partitions reach their ends
    assert len(sizes) <= 5, sizes
    assert sizes[0] == 10_000, sizes


def event_bytes(n: int) -> bytes:
    return json.dumps(event(user_id=f"u-{n}")).encode()
