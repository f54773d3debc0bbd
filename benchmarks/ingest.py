"""Ingest benchmark: throughput against a bare COPY and a Kafka Connect peer; latency; RSS.

    python -m benchmarks.ingest            # BENCH_EVENTS (default 1 000 000) events

1. Starts a throw-away PostgreSQL and Kafka (free ports, temp folders).
2. Preloads N simulated events (the fleet mix: access events, health reports,
   registry records) into the topics.
3. Ceiling: a bare COPY of exactly the rows the consumer will land into identical,
   empty tables (same columns, constraints and indexes), in one transaction.
4. Runs `python -m streaming.consumer` and times it draining the backlog exactly
   once (first batch start to last batch commit, from ops.ingest_batches), while
   sampling its peak RSS.
5. With the consumer caught up, produces at a fixed 1 k, 5 k and 20 k events/s
   (BENCH_LATENCY_SECONDS each, default 20) and measures each record's end-to-end
   latency: Kafka timestamp (set by the producer) to the commit of the batch that
   landed it; the load average is kept beside each rate's figures.
6. The peer (benchmarks/peer.py): Kafka Connect standalone with the Debezium JDBC sink
   drains the same messages, in schema envelopes, into equivalent tables with one
   task and with two; then once more with a SIGKILL of the worker half way, counting
   the duplicate coordinates it leaves (ours are counted the same way).

Writes benchmarks/results/ingest.json (`peer_rows_per_s` is the best peer run) and
prints the ceiling, ours and the peer in one table; exits 1 when a target is missed.
With KAFKA_BROKERS=3 (and optionally KAFKA_AUTH=scram) the same run goes through a
throw-away three-broker cluster (replication 3, min.insync.replicas 2, acks=all; with
scram the consumer logs in as its own principal over TLS) and writes
ingest-brokers3[-scram].json instead; the peer runs on the single broker only.
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

from benchmarks import hot_path, peer
from stack.ephemeral import EphemeralKafka, EphemeralKafkaCluster, EphemeralPostgres
from streaming.contracts import Invalid, Validator
from streaming.simulator import Simulator, SimulatorConfig
from streaming.sink import COLUMNS, TABLES, copy_line

logger = logging.getLogger("benchmarks.ingest")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"
LATENCY_RATE = 5000  # the rate whose figures keep the top-level p50/p99/max keys
LATENCY_RATES = (1000, 5000, 20000)
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "20"))
TARGETS = {
    "throughput_ratio": 0.70,
    "peer_ratio": 3.0,
    "p99_latency_ms": 1000.0,
    "p99_latency_ms_at_20000": 2000.0,
    "consumer_max_rss_mb": 250.0,
}


def _producer(kafka: EphemeralKafka | EphemeralKafkaCluster, linger_ms: int) -> Producer:
    return Producer(
        {
            **kafka.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": linger_ms,
            "queue.buffering.max.kbytes": 262_144,
        }
    )


def _send(producer: Producer, topic: str, key: Any, value: Any, done: Any = None) -> None:
    """Produce one message, serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=done)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


def produce(
    kafka: EphemeralKafka | EphemeralKafkaCluster, sim: Simulator, n: int, rate: float | None
) -> list[Any]:
    """Send n simulated messages (paced when rate is given); returns them."""
    producer = _producer(kafka, linger_ms=20 if rate is None else 5)
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
        _send(producer, m.topic, m.key, m.value, done)
        sent.append(m)
    if producer.flush(300) or failures:
        raise RuntimeError(f"preload failed: {failures} delivery failures")
    return sent


def produce_peer(kafka: EphemeralKafka, messages: list[Any]) -> None:
    """The same messages in JsonConverter envelopes to the peer's topics (benchmarks.peer)."""
    peer.create_topics(kafka)
    producer = _producer(kafka, linger_ms=20)
    for m in messages:
        topic, value = peer.envelope(m.topic, m.value)
        _send(producer, topic, m.key, value)
    if producer.flush(300):
        raise RuntimeError("peer preload: messages left undelivered after 300 s")


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


LATENCY_SQL = """
with batches as (
    select committed_at from ops.ingest_batches where batch_id > %(last_batch)s
), rows as (
    select kafka_timestamp, _ingested_at from (
        select kafka_timestamp, _ingested_at from raw.access_events
        union all select kafka_timestamp, _ingested_at from raw.device_health
        union all select kafka_timestamp, _ingested_at from raw.device_registry
    ) u
    where _ingested_at > (select max(committed_at) from ops.ingest_batches
                          where batch_id <= %(last_batch)s)
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
"""


def measure_latency(
    conn: Any,
    kafka: EphemeralKafka | EphemeralKafkaCluster,
    sim: Simulator,
    proc: subprocess.Popen[bytes],
    rate: int,
    landed_before: int,
) -> dict[str, float]:
    """With the consumer caught up, produce at `rate` for LATENCY_SECONDS; each record's
    Kafka timestamp (set by the producer) to the commit of the batch that landed it."""
    with conn.cursor() as cur:
        cur.execute("select coalesce(max(batch_id), 0) from ops.ingest_batches")
        (last_batch,) = cur.fetchone()
    count = int(rate * LATENCY_SECONDS)
    load_before = os.getloadavg()
    produce(kafka, sim, count, rate)
    wait_landed(conn, landed_before + count, 300, proc)
    with conn.cursor() as cur:
        cur.execute(LATENCY_SQL, {"last_batch": last_batch})
        p50, p99, worst, rows = cur.fetchone()
    return {
        "rate_events_per_s": rate,
        "produced": count,
        "rows": int(rows),
        "p50_ms": round(float(p50), 1),
        "p99_ms": round(float(p99), 1),
        "max_ms": round(float(worst), 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


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
        with_peer = isinstance(kafka, EphemeralKafka) and not os.environ.get("BENCH_NO_PEER")
        if with_peer:
            peer.ensure_jars()
            logger.info("preloading the same messages for the Kafka Connect peer")
            produce_peer(kafka, messages)
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
        drain_s = float(drain_s)
        logger.info("drained %d events in %.2fs (%d batches)", events, drain_s, batches)

        latency: dict[int, dict[str, float]] = {}
        expected = events
        for rate in LATENCY_RATES:
            latency[rate] = measure_latency(conn, kafka, sim, proc, rate, expected)
            expected += latency[rate]["produced"]
            logger.info(
                "latency at %d events/s: p50 %.0f ms, p99 %.0f ms, max %.0f ms (load %s)",
                rate,
                latency[rate]["p50_ms"],
                latency[rate]["p99_ms"],
                latency[rate]["max_ms"],
                latency[rate]["load_average"],
            )
        with conn.cursor() as cur:  # after the drain and every latency run
            cur.execute(
                "select count(*) = count(distinct (kafka_topic, kafka_partition, kafka_offset)) "
                "from (select kafka_topic, kafka_partition, kafka_offset from raw.access_events "
                "union all select kafka_topic, kafka_partition, kafka_offset "
                "from raw.device_health union all select kafka_topic, kafka_partition, "
                "kafka_offset from raw.device_registry) r"
            )
            (no_duplicates,) = cur.fetchone()
        p50, p99, lat_max, lat_rows = (
            latency[LATENCY_RATE][k] for k in ("p50_ms", "p99_ms", "max_ms", "rows")
        )
        proc.terminate()
        proc.wait(60)
        sampler.stopped.set()
        sampler.join()
        conn.close()
        hot: dict[str, Any] | None = None
        if isinstance(kafka, EphemeralKafka) and not os.environ.get("BENCH_NO_PROFILE"):
            logger.info("hot path: each step of the consumer alone on the same backlog")
            hot = hot_path.profile(kafka.bootstrap, events)
            hot_path.log_table(hot, drain_s / events * 1e6)
        peer_runs: list[peer.PeerRun] = []
        best: peer.PeerRun | None = None
        peer_kill: peer.PeerRun | None = None
        if with_peer:
            assert isinstance(kafka, EphemeralKafka)
            for tasks in (1, 2):
                logger.info("peer: Kafka Connect + Debezium JDBC sink, %d task(s)", tasks)
                run = peer.drain(kafka, pg, events, tasks)
                logger.info(
                    "peer, %d task(s): %d rows in %.2fs = %.0f rows/s",
                    tasks, run.rows, run.seconds, run.rows_per_s,
                )  # fmt: skip
                peer_runs.append(run)
            best = max(peer_runs, key=lambda r: r.rows_per_s)
            logger.info("peer: SIGKILL of the worker half way (%d task(s))", best.tasks)
            peer_kill = peer.drain_with_kill(kafka, pg, events, best.tasks)
            logger.info(
                "peer after SIGKILL: %d rows for %d messages, %d duplicates",
                peer_kill.rows, events, peer_kill.duplicates,
            )  # fmt: skip
        else:
            logger.info(
                "peer: not run (it runs on the default single broker without"
                " authentication; BENCH_NO_PEER unset)"
            )
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        kafka.destroy()
        pg.destroy()

    ours = events / drain_s
    peer_rate = best.rows_per_s if best else None
    checks = {
        "throughput_ratio": ours / ceiling >= TARGETS["throughput_ratio"],
        "p99_latency_ms": latency[5000]["p99_ms"] <= TARGETS["p99_latency_ms"],
        "p99_latency_ms_at_20000": latency[20000]["p99_ms"] <= TARGETS["p99_latency_ms_at_20000"],
        "consumer_max_rss_mb": sampler.peak_kb / 1024 <= TARGETS["consumer_max_rss_mb"],
        "exactly_once": bool(no_duplicates),
    }
    if peer_rate:
        checks["peer_ratio"] = ours / peer_rate >= TARGETS["peer_ratio"]
    result = {
        "events": events,
        "seconds": round(drain_s, 3),
        "events_per_s": round(ours, 1),
        "wall_seconds_including_startup": round(wall_s, 3),
        "batches": batches,
        "copy_ceiling_rows": copy_rows,
        "copy_ceiling_seconds": round(copy_s, 3),
        "copy_ceiling_rows_per_s": round(ceiling, 1),
        "ratio_to_ceiling": round(ours / ceiling, 3),
        "peer": "Kafka Connect 4.1.1 standalone + Debezium JDBC sink 3.6.0 (benchmarks/peer.py)",
        "peer_rows_per_s": round(peer_rate, 1) if peer_rate else None,
        "peer_ratio": round(ours / peer_rate, 2) if peer_rate else None,
        "peer_runs": [
            {
                "tasks": r.tasks,
                "rows": r.rows,
                "seconds": round(r.seconds, 3),
                "rows_per_s": round(r.rows_per_s, 1),
                "duplicates": r.duplicates,
            }
            for r in peer_runs
        ],
        "peer_after_sigkill": (
            {
                "tasks": peer_kill.tasks,
                "rows": peer_kill.rows,
                "messages": events,
                "duplicates": peer_kill.duplicates,
            }
            if peer_kill
            else None
        ),
        "peer_java": peer.java_version() if peer_runs else None,
        "exactly_once_no_duplicates": bool(no_duplicates),
        "latency_rate_events_per_s": LATENCY_RATE,
        "latency_events": int(lat_rows),
        "p50_latency_ms": round(float(p50), 1),
        "p99_latency_ms": round(float(p99), 1),
        "max_latency_ms": round(float(lat_max), 1),
        "latency": [latency[rate] for rate in LATENCY_RATES],
        "consumer_max_rss_mb": round(sampler.peak_kb / 1024, 1),
        "drain_us_per_record": round(drain_s / events * 1e6, 2),
        "hot_path": hot,
        "preload_seconds": round(preload_s, 2),
        "targets": TARGETS,
        "checks": checks,
        "within_target": all(checks.values()),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "kafka_brokers": brokers,
        "kafka_auth": auth,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    title = f"ingest benchmark ({brokers} broker{'s' if brokers > 1 else ''}, {auth})"
    print(f"\n{title:<44} {'rows/s':>10} {'x ceiling':>10} {'ours x it':>10}")
    print(f"{'bare COPY of the same rows (ceiling)':<44} {ceiling:>10,.0f} {1:>10.2f} {'':>10}")
    print(f"{'our consumer':<44} {ours:>10,.0f} {ours / ceiling:>10.2f} {'':>10}")
    for r in peer_runs:
        name = f"peer: Connect + Debezium JDBC, {r.tasks} task{'s' if r.tasks > 1 else ''}"
        print(f"{name:<44} {r.rows_per_s:>10,.0f} {r.rows_per_s / ceiling:>10.2f}"
              f" {ours / r.rows_per_s:>10.2f}")  # fmt: skip
    print(f"targets: ours >= {TARGETS['throughput_ratio']:.2f}x the ceiling and"
          f" >= {TARGETS['peer_ratio']:.0f}x the best peer run")  # fmt: skip
    print(f"\n{'latency (Kafka timestamp to commit)':<36} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'max ms':>8} {'target p99':>11}  load average")  # fmt: skip
    for figures in result["latency"]:
        rate = int(figures["rate_events_per_s"])
        target = {5000: "<= 1000", 20000: "<= 2000"}.get(rate, "")
        load = " ".join(f"{x:.2f}" for x in figures["load_average"])
        print(f"{f'{rate:,} events/s':<36} {figures['p50_ms']:>8.0f} {figures['p99_ms']:>8.0f}"
              f" {figures['max_ms']:>8.0f} {target:>11}  {load}")  # fmt: skip
    if hot:
        print(f"\n{'hot path, each step alone':<36} {'us/record':>10} {'seconds':>8}")
        for step in hot_path.STEPS:
            print(f"{step:<36} {hot['us_per_record'][step]:>10.2f} {hot['seconds'][step]:>8.2f}")
        print(f"{'serial sum':<36} {hot['serial_us_per_record']:>10.2f}")
        print(f"{'our drain (steps overlapped)':<36} {result['drain_us_per_record']:>10.2f}")
    print()
    print(f"{'consumer peak RSS MB':<36} {result['consumer_max_rss_mb']:>8.0f}   (<= 250)")
    print(f"{'ours: duplicate coordinates':<36} {0 if no_duplicates else 'some':>8}   (0)")
    if peer_kill:
        print(f"{'peer after SIGKILL: duplicates':<36} {peer_kill.duplicates:>8}"
              f"   ({peer_kill.rows:,} rows for {events:,} messages)")  # fmt: skip
    missed = [name for name, ok in checks.items() if not ok]
    print(
        f"\nwrote {results.relative_to(ROOT)}"
        + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
