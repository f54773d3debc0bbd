"""The consumer lands a simulated fleet exactly once and books every batch."""

from __future__ import annotations

import os
import subprocess
import sys

from ingest_helpers import (
    REPO,
    assert_exactly_once,
    counts,
    new_prefix,
    produce,
    query,
    start_consumer,
    stop_consumer,
    wait_until,
)

from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.simulator import Simulator, SimulatorConfig


def test_simulated_fleet_lands_exactly_once(kafka: EphemeralKafka, pg: EphemeralPostgres) -> None:
    prefix = new_prefix(kafka)
    sim = Simulator(
        SimulatorConfig(households=10, rate=1000, invalid_ratio=0.05, duplicate_ratio=0.02, seed=1)
    )
    messages = [sim.next() for _ in range(3000)]
    produced = produce(
        kafka,
        prefix,
        ((m.topic, m.key, m.value) for m in messages),
        tags=(m.truth.valid for m in messages),
    )
    assert len(produced) == 3000
    consumer, thread = start_consumer(kafka, pg, prefix, batch_size=500)
    try:
        wait_until(lambda: sum(counts(pg, prefix).values()) >= 3000, 60, "all records")
    finally:
        stop_consumer(consumer, thread)
    assert_exactly_once(pg, prefix, produced)
    c = counts(pg, prefix)
    assert c["device_registry"] == 30 - sum(
        1 for m in messages if m.truth.kind == "registry" and not m.truth.valid
    )
    ((batches, valid, invalid, nbytes, with_latency),) = query(
        pg,
        "select count(*), sum(events_valid + health_valid + devices_valid), "
        "sum(events_invalid + health_invalid + devices_invalid), sum(bytes), "
        "count(*) filter (where latency_p50_ms >= 0 and latency_max_ms >= latency_p50_ms) "
        "from ops.ingest_batches where consumer_group = %s",
        (prefix + "sink",),
    )
    assert batches >= 6 and with_latency == batches
    assert valid == c["access_events"] + c["device_health"] + c["device_registry"]
    assert invalid == c["dead_letters"]
    assert nbytes == sum(len(m.value) for m in messages)
    positions = query(
        pg,
        "select topic, partition, next_offset from ops.consumer_offsets where consumer_group = %s",
        (prefix + "sink",),
    )
    ends: dict[tuple[str, int], int] = {}
    for t, p, o in produced:
        ends[(t, p)] = max(ends.get((t, p), 0), o + 1)
    assert {(t, p): o for t, p, o in positions} == ends


def test_wrong_password_is_one_clear_line(kafka: EphemeralKafka, pg: EphemeralPostgres) -> None:
    env = {
        **os.environ,
        **pg.env(user="smart_access_loader"),
        "PGPASSWORD": "not-the-password",
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-m", "streaming.consumer"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "password authentication failed" in lines[0], done.stderr
    assert "PGPASSWORD" in lines[0]
