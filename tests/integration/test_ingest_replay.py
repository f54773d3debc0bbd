"""Replay rewinds the stored positions; landing stays exactly once per Kafka record."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from ingest_helpers import (
    LOADER,
    REPO,
    assert_exactly_once,
    counts,
    job_metrics,
    new_prefix,
    produce,
    query,
    start_consumer,
    stop_consumer,
    wait_until,
)

from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.simulator import Simulator, SimulatorConfig
from streaming.topics import DLQ, EVENTS


def replay(
    kafka: EphemeralKafka,
    pg: EphemeralPostgres,
    prefix: str,
    *args: str,
    metrics: Path | None = None,
):
    env = {
        **os.environ,
        **pg.env(user=LOADER),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "PYTHONPATH": str(REPO),
        # never the developer's own stack's metrics folder
        "SMART_ACCESS_METRICS_DIR": str(metrics or REPO / "tests" / "artifacts" / "metrics"),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "streaming.replay",
            "--topic-prefix",
            prefix,
            "--group",
            prefix + "sink",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def positions(pg: EphemeralPostgres, prefix: str) -> dict[tuple[str, int], int]:
    rows = query(
        pg,
        "select topic, partition, next_offset from ops.consumer_offsets where consumer_group = %s",
        (prefix + "sink",),
    )
    return {(t, p): o for t, p, o in rows}


def dlq_size(kafka: EphemeralKafka, prefix: str) -> int:
    probe = Consumer({**kafka.client_config(), "group.id": prefix + "probe"})
    try:
        return sum(
            probe.get_watermark_offsets(TopicPartition(prefix + DLQ, p), timeout=10)[1]
            for p in range(3)
        )
    finally:
        probe.close()


def consume_until_caught_up(kafka, pg, prefix, ends) -> None:
    consumer, thread = start_consumer(kafka, pg, prefix, batch_size=500)
    try:
        wait_until(lambda: positions(pg, prefix) == ends, 60, "the consumer to catch up")
    finally:
        stop_consumer(consumer, thread)


def test_replay_is_idempotent_and_refuses_a_running_consumer(
    kafka: EphemeralKafka, pg: EphemeralPostgres, tmp_path: Path
) -> None:
    prefix = new_prefix(kafka)
    sim = Simulator(SimulatorConfig(households=5, rate=1000, invalid_ratio=0.05, seed=3))
    messages = [sim.next() for _ in range(2000)]
    produced = produce(
        kafka,
        prefix,
        ((m.topic, m.key, m.value) for m in messages),
        tags=(m.truth.valid for m in messages),
    )
    ends: dict[tuple[str, int], int] = {}
    for t, p, o in produced:
        ends[(t, p)] = max(ends.get((t, p), 0), o + 1)
    consume_until_caught_up(kafka, pg, prefix, ends)
    before = counts(pg, prefix)
    dead_before = dlq_size(kafka, prefix)
    assert before["dead_letters"] > 0 and dead_before == before["dead_letters"]

    # a running consumer of the group: replay refuses, positions untouched
    consumer, thread = start_consumer(kafka, pg, prefix, batch_size=500)
    try:
        admin = AdminClient(kafka.client_config())
        wait_until(
            lambda: (
                len(
                    admin.describe_consumer_groups([prefix + "sink"])[prefix + "sink"]
                    .result()
                    .members
                )
                > 0
            ),
            60,
            "the consumer to join",
        )
        refused = replay(kafka, pg, prefix, "--from-beginning")
    finally:
        stop_consumer(consumer, thread)
    assert refused.returncode == 1
    assert "running consumer" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert positions(pg, prefix) == ends

    for _ in range(2):  # twice: replaying a replay changes nothing either
        done = replay(kafka, pg, prefix, "--from-beginning", metrics=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "rewound" in done.stdout
        # the last run's figures, for the node exporter's textfile collector
        figures = job_metrics(tmp_path, "replay")
        mode = (("mode", "replay"),)
        assert figures[("smart_access_replay_partitions_moved", mode)] == len(ends)
        assert figures[("smart_access_replay_records_to_reread", mode)] == sum(ends.values())
        assert all(o == 0 for o in positions(pg, prefix).values())
        consume_until_caught_up(kafka, pg, prefix, ends)
        assert counts(pg, prefix) == before
        assert_exactly_once(pg, prefix, produced)
    assert dlq_size(kafka, prefix) == dead_before, "replayed dead letters are not re-sent"

    # one topic from a timestamp: only that topic moves, and only back
    done = replay(
        kafka,
        pg,
        prefix,
        "--topic",
        EVENTS,
        "--from-timestamp",
        (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
    )
    assert done.returncode == 0, done.stderr
    moved = positions(pg, prefix)
    assert all(o == 0 for (t, _p), o in moved.items() if t == prefix + EVENTS)
    assert all(o == ends[(t, p)] for (t, p), o in moved.items() if t != prefix + EVENTS)
    consume_until_caught_up(kafka, pg, prefix, ends)
    assert counts(pg, prefix) == before

    future = replay(
        kafka, pg, prefix, "--from-timestamp", (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    )
    assert future.returncode == 0 and positions(pg, prefix) == ends


def test_replay_before_retention_is_a_clear_error(
    kafka: EphemeralKafka, pg: EphemeralPostgres
) -> None:
    prefix = new_prefix(kafka)
    sim = Simulator(SimulatorConfig(households=5, rate=1000, seed=4))
    messages = [sim.next() for _ in range(300)]
    produced = produce(kafka, prefix, ((m.topic, m.key, m.value) for m in messages))
    admin = AdminClient(kafka.client_config())
    events = [(t, p, o) for (t, p, o) in produced if t == prefix + EVENTS]
    t, p, _o = events[0]
    cut = max(o for (tt, pp, o) in events if pp == p) // 2 + 1
    for future in admin.delete_records([TopicPartition(t, p, cut)]).values():
        future.result()
    result = replay(kafka, pg, prefix, "--from-timestamp", "2000-01-01T00:00:00+00:00")
    assert result.returncode == 1
    assert "retains" in result.stderr and "--from-beginning" in result.stderr
    assert "Traceback" not in result.stderr

    bad = replay(kafka, pg, prefix, "--from-timestamp", "yesterday")
    assert bad.returncode == 2 and "ISO-8601" in bad.stderr
