"""Prometheus metrics of the consumer, served on 127.0.0.1 (`--metrics-port`), and
of the one-shot jobs (redrive, replay), written where the node exporter's textfile
collector reads them (`write_job_metrics`).

Each consumer keeps its own registry (several can run in one process, as the tests
do), with the process collector for CPU, memory and `process_start_time_seconds`
(`changes(process_start_time_seconds[1h])` counts restarts). Names follow
Prometheus' conventions: counters end in `_total`, durations are seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
    write_to_textfile,
)

__all__ = [
    "ConsumerMetrics",
    "JobFigures",
    "SimulatorMetrics",
    "job_metrics_dir",
    "write_job_metrics",
]

_SIZES = (1, 10, 100, 500, 1_000, 5_000, 10_000, 20_000, 50_000)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LATENCY_SAMPLE = 100  # records per batch whose end-to-end latency is observed


class ConsumerMetrics:
    def __init__(self, group: str) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.consumed = Counter(
            "smart_access_records_consumed_total",
            "Records read from Kafka, by topic (valid or not)",
            ["topic"],
            registry=self.registry,
        )
        self.landed = Counter(
            "smart_access_records_landed_total",
            "Rows committed to raw, by topic",
            ["topic"],
            registry=self.registry,
        )
        self.dead = Counter(
            "smart_access_dead_letters_total",
            "Records committed to raw.dead_letters, by topic and error kind",
            ["topic", "kind"],
            registry=self.registry,
        )
        self.batches = Histogram(
            "smart_access_batch_records",
            "Records per committed batch",
            buckets=_SIZES,
            registry=self.registry,
        )
        self.write_seconds = Histogram(
            "smart_access_batch_write_seconds",
            "Seconds to land one batch (COPY, dead letters, positions, stats, COMMIT)",
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.latency = Histogram(
            "smart_access_end_to_end_latency_seconds",
            "Kafka record timestamp to commit in PostgreSQL (a sample of each batch)",
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.position = Gauge(
            "smart_access_stored_position",
            "Next offset stored in ops.consumer_offsets",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "smart_access_consumer_lag_records",
            "Log end minus stored position",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.halted = Gauge(
            "smart_access_partition_halted",
            "1 while a partition is stopped because its log was replaced (ops.consumer_halts)",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.errors = Counter(
            "smart_access_errors_total",
            "Infrastructure errors the consumer paused for, by system and kind",
            ["system", "kind"],
            registry=self.registry,
        )
        self.info = Gauge(
            "smart_access_consumer_info", "The consumer's group", ["group"], registry=self.registry
        )
        self.info.labels(group=group).set(1)
        self._server: object | None = None

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        self._server = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        server = self._server
        if server is not None:
            server[0].shutdown()  # type: ignore[index]
            self._server = None

    def record_batch(
        self,
        landed_by_topic: dict[str, int],
        dead_by_topic_kind: dict[tuple[str, str], int],
        size: int,
        seconds: float,
        kafka_timestamps: Iterable[int],
        positions: dict[tuple[str, int], int],
    ) -> None:
        for topic, n in landed_by_topic.items():
            if n:
                self.landed.labels(topic=topic).inc(n)
        for (topic, kind), n in dead_by_topic_kind.items():
            self.dead.labels(topic=topic, kind=kind).inc(n)
        self.batches.observe(size)
        self.write_seconds.observe(seconds)
        now_ms = time.time() * 1000
        stamps = [ts for ts in kafka_timestamps if ts > 0]
        step = max(1, len(stamps) // _LATENCY_SAMPLE)
        for ts in stamps[::step]:
            self.latency.observe(max(0.0, (now_ms - ts) / 1000))
        for (topic, partition), offset in positions.items():
            self.position.labels(topic=topic, partition=str(partition)).set(offset)


class SimulatorMetrics:
    """What the device simulator sends and Kafka acknowledges, by topic."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.sent = Counter(
            "smart_access_simulator_sent_total",
            "Messages handed to the producer, by topic and what they are on purpose",
            ["topic", "truth"],
            registry=self.registry,
        )
        self.acknowledged = Counter(
            "smart_access_simulator_acknowledged_total",
            "Messages the broker acknowledged, by topic",
            ["topic"],
            registry=self.registry,
        )
        self.failed = Counter(
            "smart_access_simulator_failed_total",
            "Messages the producer gave up on, by topic",
            ["topic"],
            registry=self.registry,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)


# --- one-shot jobs -------------------------------------------------------------------

# A job's figures: metric name (after smart_access_<job>_) -> help, label names and
# the rows (label values, value) of its last run.
JobFigures = Mapping[str, tuple[str, tuple[str, ...], Iterable[tuple[tuple[str, ...], float]]]]


def job_metrics_dir() -> Path | None:
    """Where jobs write their metrics: SMART_ACCESS_METRICS_DIR, else the embedded
    stack's `metrics` folder when it exists (the node exporter reads it), else none."""
    configured = os.environ.get("SMART_ACCESS_METRICS_DIR")
    if configured:
        return Path(configured)
    stack = os.environ.get("SMART_ACCESS_STACK_DIR") or str(
        Path(__file__).resolve().parent.parent / ".stack"
    )
    folder = Path(stack) / "metrics"
    return folder if folder.is_dir() else None


def write_job_metrics(
    job: str, figures: JobFigures, *, started: float, folder: Path | None
) -> Path | None:
    """Write the last run of `job` as `<folder>/smart_access_<job>.prom` (atomically:
    a scrape never sees half a file). Callers skip dry runs: they change nothing."""
    if folder is None:
        return None
    registry = CollectorRegistry()
    prefix = f"smart_access_{job}"
    Gauge(
        f"{prefix}_last_run_timestamp_seconds", f"When {job} last finished", registry=registry
    ).set(time.time())
    Gauge(
        f"{prefix}_last_run_duration_seconds", f"Seconds {job}'s last run took", registry=registry
    ).set(time.time() - started)
    for name, (description, labels, rows) in figures.items():
        gauge = Gauge(f"{prefix}_{name}", description, list(labels), registry=registry)
        if not labels:
            gauge.set(sum(value for _labels, value in rows))
            continue
        for values, value in rows:
            gauge.labels(*values).set(value)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}.prom"
    write_to_textfile(str(path), registry)
    return path
