"""Ingest benchmark: consumer throughput against a bare COPY, latency at 5 k ev/s, RSS.

    python -m benchmarks.ingest            # BENCH_EVENTS (default 1 000 000) events

1. Starts a throw-away PostgreSQL and Kafka (free ports, temp folders).
2. Preloads N simulated events (the fleet mix: access events, health reports,
   registry records) into the topics.
3. Ceiling: a bare COPY of exactly the rows the consumer will land into identical,
   empty tables (same columns, constraints and indexes), in one transaction.
4. Runs `python -m streaming.consumer` and times it draining the backlog exactly
   once (first batch start to last batch commit, from ops.ingest_batches), while
   sampling its peak RSS.
5. With the consumer caught up, produces at a fixed 5 k events/s and measures each
   record's end-to-end latency: Kafka timestamp (set by the producer) to the commit
   of the batch that landed it.

Writes benchmarks/results/ingest.json and prints a table. With KAFKA_BROKERS=3 (and
optionally KAFKA_AUTH=scram) the same run goes through a throw-away three-broker cluster
(replication 3, min.insync.replicas 2, acks=all; with scram the consumer logs in as its
own principal over TLS) and writes ingest-brokers3[-scram].json instead.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from confluent_kafka import Producer

from stack.ephemeral import EphemeralKafka, EphemeralKafkaCluster, EphemeralPostgres
from streaming.contracts import Invalid, Validator
from streaming.simulator import Simulator, SimulatorConfig
from streaming.sink import COLUMNS, TABLES, copy_line

logger = logging.getLogger("benchmarks.ingest")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"
LATENCY_RATE = 5000
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "20"))
TARGETS = {"throughput_ratio": 0.70, "p99_latency_ms": 1000.0, "consumer_max_rss_mb": 250.0}


def produce(
    kafka: EphemeralKafka | EphemeralKafkaCluster, sim: Simulator, n: int, rate: float | None
) -> list[Any]:
    """Send n simulated messages (paced when rate is given); returns them."""
    producer = Producer(
        {
            **kafka.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 20 if rate is None else 5,
            "queue.buffering.max.kbytes": 262_144,
        }
    )
    failures = 0

    def done(err: Any, _msg: Any) -> None:
        nonlocal failures
        failures += err is not None

    sent = []
    start = time.monotonic()
    for i in range(n):
        if rate is not None and i % 50 == 0:
            ahead = i / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        m = sim.next()
        while True:
            try:
                producer.produce(m.topic, key=m.key, value=m.value, on_delivery=done)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        sent.append(m)
    if producer.flush(300) or failures:
        raise RuntimeError(f"preload failed: {failures} delivery failures")
    return sent


def copy_ceiling(pg: EphemeralPostgres, messages: list[Any]) -> tuple[float, int]:
    """Seconds for a bare COPY of the same rows into identical empty tables."""
    validator = Validator()
    now = datetime.now(UTC)
    lines: dict[str, list[str]] = {t: [] for t in COLUMNS}
    offsets: dict[str, int] = {}
    for m in messages:
        record = validator.validate(m.topic, m.value, now)
        if isinstance(record, Invalid):
            continue
        offset = offsets.get(m.topic, 0)
        offsets[m.topic] = offset + 1
        lines[TABLES[m.topic]].append(
            copy_line(record, m.topic, 0, offset, 1_700_000_000_000, m.key.decode())
        )
    payloads = {t: "".join(rows).encode() for t, rows in lines.items()}
    rows = sum(len(v) for v in lines.values())
    conn = psycopg2.connect(pg.dsn())
    try:
        with conn.cursor() as cur:
            cur.execute("create schema if not exists bench")
            for table in COLUMNS:
                cur.execute(f"drop table if exists bench.{table}")
                cur.execute(f"create table bench.{table} (like raw.{table} including all)")
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cur:
            for table, payload in payloads.items():
                cur.copy_expert(
                    f"copy bench.{table} ({', '.join(COLUMNS[table])}) from stdin",
                    io.BytesIO(payload),
                )
        conn.commit()
        seconds = time.perf_counter() - start
        with conn.cursor() as cur:
            for table in COLUMNS:
                cur.execute(f"drop table bench.{table}")
        conn.commit()
    finally:
        conn.close()
    return seconds, rows


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self.stopped.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError):
                return
            self.stopped.wait(0.2)


def landed(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "select coalesce(sum(events_valid + events_invalid + health_valid + health_invalid"
            " + devices_valid + devices_invalid), 0) from ops.ingest_batches"
        )
        return int(cur.fetchone()[0])


def wait_landed(conn: Any, target: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while landed(conn) < target:
        if proc.poll() is not None:
            raise RuntimeError(f"consumer exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {landed(conn)} of {target} landed after {timeout:.0f}s")
        time.sleep(0.2)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    events = int(os.environ.get("BENCH_EVENTS", "1000000"))
    batch_size = os.environ.get("BENCH_BATCH_SIZE")
    brokers = int(os.environ.get("KAFKA_BROKERS") or 1)
    auth = os.environ.get("KAFKA_AUTH") or "none"
    if brokers not in (1, 3) or auth not in ("none", "scram"):
        print("error: KAFKA_BROKERS must be 1 or 3 and KAFKA_AUTH none or scram", file=sys.stderr)
        return 2
    results = RESULTS
    if (brokers, auth) != (1, "none"):
        suffix = f"-brokers{brokers}" + ("-scram" if auth == "scram" else "")
        results = RESULTS.with_name(f"ingest{suffix}.json")
    logger.info("starting throw-away PostgreSQL and Kafka (%d broker(s), auth %s)", brokers, auth)
    pg = EphemeralPostgres.create()
    kafka: EphemeralKafka | EphemeralKafkaCluster
    if (brokers, auth) == (1, "none"):
        kafka = EphemeralKafka.create()
        client_env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap}
    else:
        kafka = EphemeralKafkaCluster.create(brokers=brokers, auth=auth)
        client_env = kafka.env("consumer")
    proc: subprocess.Popen[bytes] | None = None
    try:
        sim = Simulator(SimulatorConfig(households=2000, rate=100_000, seed=2024))
        logger.info("preloading %d events", events)
        t0 = time.monotonic()
        messages = produce(kafka, sim, events, None)
        preload_s = time.monotonic() - t0
        logger.info("preloaded in %.1fs; timing the bare COPY ceiling", preload_s)
        copy_s, copy_rows = copy_ceiling(pg, messages)
        ceiling = copy_rows / copy_s
        del messages
        logger.info("COPY ceiling: %d rows in %.2fs = %.0f rows/s", copy_rows, copy_s, ceiling)

        env = {
            **os.environ,
            **pg.env(user="smart_access_loader"),
            **client_env,
            "PYTHONPATH": str(ROOT),
        }
        args = [sys.executable, "-m", "streaming.consumer", "--log-level", "WARNING"]
        if batch_size:
            args += ["--batch-size", batch_size]
        log = (ROOT / "benchmarks" / "results" / "consumer.log").open("wb")
        wall0 = time.monotonic()
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = RssSampler(proc.pid)
        sampler.start()
        conn = psycopg2.connect(pg.dsn())
        conn.autocommit = True
        wait_landed(conn, events, 1800, proc)
        wall_s = time.monotonic() - wall0
        with conn.cursor() as cur:
            cur.execute(
                "select extract(epoch from max(committed_at) - min(started_at)), count(*) "
                "from ops.ingest_batches"
            )
            drain_s, batches = cur.fetchone()
            cur.execute("select max(batch_id) from ops.ingest_batches")
            last_batch = cur.fetchone()[0]
            cur.execute(
                "select count(*) = count(distinct (kafka_topic, kafka_partition, kafka_offset)) "
                "from (select kafka_topic, kafka_partition, kafka_offset from raw.access_events "
                "union all select kafka_topic, kafka_partition, kafka_offset "
                "from raw.device_health union all select kafka_topic, kafka_partition, "
                "kafka_offset from raw.device_registry) r"
            )
            (no_duplicates,) = cur.fetchone()
        drain_s = float(drain_s)
        logger.info("drained %d events in %.2fs (%d batches)", events, drain_s, batches)

        logger.info("latency: %d events/s for %.0fs", LATENCY_RATE, LATENCY_SECONDS)
        lat_n = int(LATENCY_RATE * LATENCY_SECONDS)
        produce(kafka, sim, lat_n, LATENCY_RATE)
        wait_landed(conn, events + lat_n, 300, proc)
        with conn.cursor() as cur:
            cur.execute(
                """
                with batches as (
                    select committed_at from ops.ingest_batches where batch_id > %s
                ), rows as (
                    select kafka_timestamp, _ingested_at from (
                        select kafka_timestamp, _ingested_at from raw.access_events
                        union all select kafka_timestamp, _ingested_at from raw.device_health
                        union all select kafka_timestamp, _ingested_at from raw.device_registry
                    ) u
                    where _ingested_at > (select max(committed_at) from ops.ingest_batches
                                          where batch_id <= %s)
                )
                -- a row's batch is the first commit after it was copied: batches are
                -- written one at a time, the next only after the previous committed
                select
                    percentile_cont(0.5) within group (order by ms),
                    percentile_cont(0.99) within group (order by ms),
                    max(ms), count(*)
                from (
                    select extract(epoch from (
                        select min(b.committed_at) from batches b
                        where b.committed_at >= r._ingested_at
                    ) - r.kafka_timestamp) * 1000 as ms
                    from rows r
                ) l
                """,
                (last_batch, last_batch),
            )
            p50, p99, lat_max, lat_rows = cur.fetchone()
        proc.terminate()
        proc.wait(60)
        sampler.stopped.set()
        sampler.join()
        conn.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        kafka.destroy()
        pg.destroy()

    result = {
        "events": events,
        "seconds": round(drain_s, 3),
        "events_per_s": round(events / drain_s, 1),
        "wall_seconds_including_startup": round(wall_s, 3),
        "batches": batches,
        "copy_ceiling_rows": copy_rows,
        "copy_ceiling_seconds": round(copy_s, 3),
        "copy_ceiling_rows_per_s": round(ceiling, 1),
        "ratio_to_ceiling": round(events / drain_s / ceiling, 3),
        "exactly_once_no_duplicates": bool(no_duplicates),
        "latency_rate_events_per_s": LATENCY_RATE,
        "latency_events": int(lat_rows),
        "p50_latency_ms": round(float(p50), 1),
        "p99_latency_ms": round(float(p99), 1),
        "max_latency_ms": round(float(lat_max), 1),
        "consumer_max_rss_mb": round(sampler.peak_kb / 1024, 1),
        "preload_seconds": round(preload_s, 2),
        "targets": TARGETS,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "kafka_brokers": brokers,
        "kafka_auth": auth,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("events", f"{events:,}", ""),
        ("drain seconds", f"{drain_s:.2f}", ""),
        ("consumer events/s", f"{result['events_per_s']:,.0f}", ""),
        ("bare COPY rows/s (ceiling)", f"{ceiling:,.0f}", ""),
        ("ratio to ceiling", f"{result['ratio_to_ceiling']:.2f}", ">= 0.70"),
        ("p50 latency ms @5k/s", f"{result['p50_latency_ms']:.0f}", ""),
        ("p99 latency ms @5k/s", f"{result['p99_latency_ms']:.0f}", "<= 1000"),
        ("consumer peak RSS MB", f"{result['consumer_max_rss_mb']:.0f}", "<= 250"),
        ("no duplicate coordinates", str(result["exactly_once_no_duplicates"]), "True"),
    ]
    title = f"ingest benchmark ({brokers} broker{'s' if brokers > 1 else ''}, {auth})"
    print(f"\n{title:<30} {'measured':>14} {'target':>10}")
    for name, value, target in rows:
        print(f"{name:<30} {value:>14} {target:>10}")
    print(f"\nwrote {results.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
