"""The consumer's Prometheus metrics move by exactly what a produced batch adds."""

from __future__ import annotations

import json
import urllib.request

from ingest_helpers import (
    counts,
    event,
    new_prefix,
    produce,
    start_consumer,
    stop_consumer,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families

from stack.ephemeral import EphemeralKafka, EphemeralPostgres, free_port
from streaming.topics import EVENTS


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_follow_the_batches(kafka: EphemeralKafka, pg: EphemeralPostgres) -> None:
    prefix = new_prefix(kafka)
    port = free_port()
    consumer, thread = start_consumer(kafka, pg, prefix, metrics_port=port)
    try:
        produced = produce(
            kafka,
            prefix,
            [(EVENTS, f"k{i}".encode(), json.dumps(event()).encode()) for i in range(300)]
            + [(EVENTS, b"k1", b"not json")] * 7,
        )
        wait_until(lambda: sum(counts(pg, prefix).values()) == 307, 60, "the first records")
        wait_until(
            lambda: (
                scrape(port).get(("smart_access_records_landed_total", (("topic", EVENTS),))) == 300
            ),
            10,
            "the landed counter",
        )
        first = scrape(port)
        assert first[("smart_access_records_consumed_total", (("topic", EVENTS),))] == 307
        key = ("smart_access_dead_letters_total", (("kind", "not_json"), ("topic", EVENTS)))
        assert first[key] == 7
        assert first[("smart_access_batch_records_count", ())] >= 1
        assert first[("smart_access_batch_records_sum", ())] == 307
        ends: dict[tuple[str, int], int] = {}
        for t, p, o in produced:
            ends[(t, p)] = max(ends.get((t, p), 0), o + 1)
        for (topic, partition), end in ends.items():
            position = (
                "smart_access_stored_position",
                (("partition", str(partition)), ("topic", topic)),
            )
            assert first[position] == end
        assert first[("process_start_time_seconds", ())] > 0

        produce(
            kafka,
            prefix,
            [(EVENTS, f"k{i}".encode(), json.dumps(event()).encode()) for i in range(50)],
        )
        wait_until(lambda: counts(pg, prefix)["access_events"] == 350, 60, "the second batch")
        wait_until(
            lambda: (
                scrape(port)[("smart_access_records_landed_total", (("topic", EVENTS),))] == 350
            ),
            10,
            "the landed counter",
        )
        second = scrape(port)
        assert second[key] == 7  # no new dead letters
        assert second[("smart_access_batch_records_sum", ())] == 357
        assert second[("smart_access_end_to_end_latency_seconds_count", ())] > 0
    finally:
        stop_consumer(consumer, thread)
