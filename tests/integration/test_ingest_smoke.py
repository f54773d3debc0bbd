from __future__ import annotations

from ingest_helpers import counts, new_prefix, produce, start_consumer, stop_consumer, wait_until

from stack.ephemeral import EphemeralKafka, EphemeralPostgres
from streaming.simulator import Simulator, SimulatorConfig


def test_simulated_fleet_lands_exactly(kafka: EphemeralKafka, pg: EphemeralPostgres) -> None:
    prefix = new_prefix(kafka)
    sim = Simulator(SimulatorConfig(households=10, rate=1000, invalid_ratio=0.05, seed=1))
    messages = [sim.next() for _ in range(3000)]
    produce(kafka, prefix, ((m.topic, m.key, m.value) for m in messages))
    valid = sum(m.truth.valid for m in messages)
    consumer, thread = start_consumer(kafka, pg, prefix)
    try:
        wait_until(lambda: sum(counts(pg, prefix).values()) >= 3000, 60, "all records")
    finally:
        stop_consumer(consumer, thread)
    c = counts(pg, prefix)
    assert c["dead_letters"] == 3000 - valid
    assert c["access_events"] + c["device_health"] + c["device_registry"] == valid
