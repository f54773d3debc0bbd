"""Exactly once whatever crashes: kill -9, broker restart, PostgreSQL restart, rebalance.

Each test produces a known set of records (some invalid on purpose), breaks
something while the consumer works, and then checks that raw holds exactly the
valid records and the dead letters exactly the invalid ones, each once.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient
from ingest_helpers import (
    assert_exactly_once,
    consumer_process,
    landed_total,
    new_prefix,
    produce,
    start_consumer,
    stop_consumer,
    wait_until,
)

from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.simulator import Simulator, SimulatorConfig


def simulated(kafka: EphemeralKafka, prefix: str, n: int, seed: int) -> dict:
    sim = Simulator(
        SimulatorConfig(
            households=100,
            rate=20_000,
            invalid_ratio=0.01,
            duplicate_ratio=0.01,
            late_ratio=0.02,
            seed=seed,
        )
    )
    messages = (sim.next() for _ in range(n))
    truth: list[bool] = []

    def records():
        for m in messages:
            truth.append(m.truth.valid)
            yield m.topic, m.key, m.value

    produced = produce(kafka, prefix, records(), tags=iter(lambda: truth[-1], object()))
    assert len(produced) == n
    return produced


def test_kill_minus_nine_at_random_moments(
    kafka: EphemeralKafka, pg: EphemeralPostgres, tmp_path: Path
) -> None:
    total = 200_000
    prefix = new_prefix(kafka)
    produced = simulated(kafka, prefix, total, seed=7)
    rng = random.Random(7)
    log = tmp_path / "consumer.log"
    kills = 0
    for _ in range(4):
        before = landed_total(pg, prefix)
        proc = consumer_process(kafka, pg, prefix, "--batch-size", "2000", log=log)
        try:
            wait_until(lambda b=before: landed_total(pg, prefix) > b, 60, "the consumer to land")
            time.sleep(rng.uniform(0.0, 1.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        kills += 1
        if landed_total(pg, prefix) >= total:
            break
    assert kills >= 2, "the run ended before the consumer could be killed twice"
    proc = consumer_process(kafka, pg, prefix, "--batch-size", "2000", log=log)
    try:
        wait_until(lambda: landed_total(pg, prefix) >= total, 180, "all records to land")
        time.sleep(1.0)  # anything extra would show up now
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-2000:]
    assert_exactly_once(pg, prefix, produced)


def test_broker_restart_mid_run(kafka: EphemeralKafka, pg: EphemeralPostgres) -> None:
    prefix = new_prefix(kafka)
    produced = simulated(kafka, prefix, 40_000, seed=11)
    consumer, thread = start_consumer(kafka, pg, prefix, batch_size=1000)
    try:
        wait_until(lambda: landed_total(pg, prefix) > 5_000, 60, "the consumer to land")
        kafka.restart()
        wait_until(lambda: landed_total(pg, prefix) >= 40_000, 180, "all records to land")
        assert thread.is_alive()
    finally:
        stop_consumer(consumer, thread)
    assert_exactly_once(pg, prefix, produced)


def test_postgres_restart_mid_run(kafka: EphemeralKafka, pg: EphemeralPostgres) -> None:
    prefix = new_prefix(kafka)
    produced = simulated(kafka, prefix, 40_000, seed=13)
    consumer, thread = start_consumer(kafka, pg, prefix, batch_size=1000, max_backoff=2.0)
    try:
        wait_until(lambda: landed_total(pg, prefix) > 5_000, 60, "the consumer to land")
        pg.stop(signal.SIGQUIT)  # immediate shutdown: in-flight transactions are lost
        time.sleep(3)
        assert thread.is_alive(), "the consumer must wait for PostgreSQL, not crash"
        pg.start()
        wait_until(lambda: landed_total(pg, prefix) >= 40_000, 180, "all records to land")
        assert thread.is_alive()
    finally:
        stop_consumer(consumer, thread)
    assert_exactly_once(pg, prefix, produced)


def test_two_consumers_share_partitions_and_survive_a_kill(
    kafka: EphemeralKafka, pg: EphemeralPostgres, tmp_path: Path
) -> None:
    prefix = new_prefix(kafka)
    group = prefix + "sink"
    log = tmp_path / "consumers.log"
    first = consumer_process(kafka, pg, prefix, "--batch-size", "1000", log=log)
    second = consumer_process(kafka, pg, prefix, "--batch-size", "1000", log=log)
    admin = AdminClient(kafka.client_config())

    def members() -> int:
        try:
            description = admin.describe_consumer_groups([group])[group].result()
        except Exception:
            return 0
        assigned = [m for m in description.members if m.assignment.topic_partitions]
        return len(assigned) if str(description.state).endswith("STABLE") else 0

    try:
        wait_until(lambda: members() == 2, 90, "both consumers to share the partitions")
        produced = simulated(kafka, prefix, 60_000, seed=17)
        wait_until(lambda: landed_total(pg, prefix) > 10_000, 60, "landing to start")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        wait_until(lambda: landed_total(pg, prefix) >= 60_000, 180, "the survivor to land all")
        time.sleep(1.0)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log.read_text()[-2000:]
    assert_exactly_once(pg, prefix, produced)
