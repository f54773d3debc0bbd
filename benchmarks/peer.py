"""The ingest benchmark's peer: Kafka Connect standalone with the Debezium JDBC sink.

A user landing Kafka in PostgreSQL would otherwise run Kafka Connect with a JDBC sink,
so `make bench-ingest` drains the same messages through it, on the same machine in the
same run, into tables equivalent to ours:

- Messages: the sink connector needs records with a schema, so each message's JSON is
  re-sent, unchanged in its fields, inside a JsonConverter envelope
  (`{"schema": ..., "payload": ...}`, `value.converter.schemas.enable=true`) to a topic
  of its own per landing table (`peer_access_events`, `peer_device_health`,
  `peer_device_registry`; six partitions like ours). Keys stay the device id
  (StringConverter). Timestamps and UUIDs travel as strings and PostgreSQL casts them
  to the columns' types (`stringtype=unspecified` on the JDBC URL).
- Tables: `public.peer_*`, created `like raw.*` (same columns, types, defaults and
  checks); the Kafka coordinates and record time come from the InsertField transform.
  Ours have a unique key on the coordinates; the peer's is a plain index on the same
  columns (same write cost), because insert mode is at-least-once and a unique key
  stops its task on the first re-delivered record after a crash (measured: it does),
  where duplicates are to be counted.
- Tuning, written down: insert mode, `batch.size` 20 000, `consumer.max.poll.records`
  20 000, 50 MB fetches, `reWriteBatchedInserts=true`, heap 1 GB, offsets committed
  every 10 s; one task and two tasks (two cores, six partitions), the best run counts.

`drain()` times one run from the first row landed to the last; `drain_with_kill()`
kills the worker with SIGKILL part way, starts it again and counts the duplicate
coordinates it leaves, the same count as ours.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from stack.config import StackError
from stack.ephemeral import EphemeralKafka, EphemeralPostgres, free_port
from stack.kafka import run_maven
from streaming.topics import DEVICES, EVENTS, HEALTH

logger = logging.getLogger("benchmarks.peer")

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "benchmarks" / "peer" / "pom.xml"
SETTINGS = ROOT / "benchmarks" / "peer" / "settings.xml"
LIBS = ROOT / "benchmarks" / "peer" / "target" / "libs"
CONNECTOR = "io.debezium.connector.jdbc.JdbcSinkConnector"
PARTITIONS = 6
BATCH_SIZE = 20_000
POLL_RECORDS = 20_000
OFFSET_FLUSH_MS = 10_000
HEAP = "-Xmx1g"

# Each topic's envelope: (field, Connect type, optional), in the contract's order.
_FIELDS: dict[str, tuple[str, list[tuple[str, str, bool]]]] = {
    EVENTS: (
        "access_events",
        [
            ("schema_version", "int16", False),
            ("event_id", "string", False),
            ("device_id", "string", False),
            ("household_id", "string", True),
            ("event_ts", "string", False),
            ("event_type", "string", False),
            ("trigger_source", "string", False),
            ("user_id", "string", True),
            ("failure_reason", "string", True),
        ],
    ),
    HEALTH: (
        "device_health",
        [
            ("schema_version", "int16", False),
            ("device_id", "string", False),
            ("reported_at", "string", False),
            ("battery_pct", "int16", False),
            ("signal_strength_dbm", "int16", False),
            ("is_online", "boolean", False),
            ("firmware_version", "string", True),
            ("temperature_c", "double", True),
        ],
    ),
    DEVICES: (
        "device_registry",
        [
            ("schema_version", "int16", False),
            ("device_id", "string", False),
            ("household_id", "string", False),
            ("device_type", "string", False),
            ("model", "string", False),
            ("firmware_version", "string", False),
            ("installed_at", "string", False),
            ("status", "string", False),
            ("updated_at", "string", False),
            ("region", "string", True),
            ("timezone", "string", True),
        ],
    ),
}
TABLES = {topic: table for topic, (table, _) in _FIELDS.items()}
TOPICS = {topic: f"peer_{table}" for topic, table in TABLES.items()}
FIELDS = {topic: [name for name, _, _ in fields] for topic, (_, fields) in _FIELDS.items()}
_SCHEMAS = {
    topic: {
        "type": "struct",
        "name": f"smart_access.{table}",
        "optional": False,
        "fields": [{"field": n, "type": t, "optional": o} for n, t, o in fields],
    }
    for topic, (table, fields) in _FIELDS.items()
}


class PeerError(StackError):
    """The peer could not be fetched, started or drained; the message says why."""


def ensure_jars() -> Path:
    """Fetch the worker's and the connector's jars with Maven once (~75 MB)."""
    if (LIBS / ".complete").exists():
        return LIBS
    for tool in ("java", "mvn"):
        if not shutil.which(tool):
            raise PeerError(f"{tool} not found on PATH: the Kafka Connect peer needs it")
    logger.info("fetching Kafka Connect and the Debezium JDBC sink from Maven Central")
    run_maven(
        ["-s", str(SETTINGS), "-f", str(POM), "dependency:copy-dependencies"], "the peer's jars"
    )
    (LIBS / ".complete").touch()
    return LIBS


def envelope(topic: str, value: bytes) -> tuple[str, bytes]:
    """The peer's topic and the message inside a JsonConverter schema envelope."""
    payload = json.loads(value)
    fields = FIELDS[topic]
    body = {"schema": _SCHEMAS[topic], "payload": {name: payload.get(name) for name in fields}}
    return TOPICS[topic], json.dumps(body, separators=(",", ":")).encode()


def create_topics(kafka: EphemeralKafka) -> None:
    """The peer's topics, six partitions each; ones that exist already are kept."""
    admin = AdminClient(kafka.client_config())
    futures = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in TOPICS.values()])
    for future in futures.values():
        try:
            future.result(30)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def create_tables(dsn: str) -> None:
    """public.peer_* like raw.* (columns, types, defaults, checks and indexes), each
    unique key on the coordinates replaced by a plain index on the same columns."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        for topic, table in TABLES.items():
            peer = TOPICS[topic]
            cur.execute(f"drop table if exists public.{peer}")
            cur.execute(f"create table public.{peer} (like raw.{table} including all)")
            cur.execute(
                "select conname, pg_get_constraintdef(oid) from pg_constraint"
                " where conrelid = %s::regclass and contype = 'u'",
                (f"public.{peer}",),
            )
            for name, definition in cur.fetchall():
                columns = definition.removeprefix("UNIQUE ")
                cur.execute(f"alter table public.{peer} drop constraint {name}")
                cur.execute(f"create index on public.{peer} {columns}")
            cur.execute(f"grant select, insert on public.{peer} to smart_access_loader")
    conn.close()


def _count(cur: Any, distinct: bool = False) -> int:
    what = (
        "count(distinct (kafka_topic, kafka_partition, kafka_offset))" if distinct else "count(*)"
    )
    cur.execute("select " + " + ".join(f"(select {what} from public.{t})" for t in TOPICS.values()))
    return int(cur.fetchone()[0])


@dataclass
class PeerRun:
    tasks: int
    rows: int
    seconds: float
    duplicates: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class ConnectWorker:
    """One Kafka Connect standalone worker running the JDBC sink as `name`."""

    def __init__(
        self, kafka: EphemeralKafka, pg: EphemeralPostgres, folder: Path, name: str, tasks: int
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        (folder / "worker.properties").write_text(
            f"bootstrap.servers={kafka.bootstrap}\n"
            "key.converter=org.apache.kafka.connect.storage.StringConverter\n"
            "value.converter=org.apache.kafka.connect.json.JsonConverter\n"
            "value.converter.schemas.enable=true\n"
            f"offset.storage.file.filename={folder / 'offsets'}\n"
            f"offset.flush.interval.ms={OFFSET_FLUSH_MS}\n"
            f"listeners=http://127.0.0.1:{free_port()}\n"
            f"consumer.max.poll.records={POLL_RECORDS}\n"
            "consumer.fetch.max.bytes=52428800\n"
            "consumer.max.partition.fetch.bytes=10485760\n"
        )
        (folder / "sink.properties").write_text(
            f"name={name}\n"
            f"connector.class={CONNECTOR}\n"
            f"tasks.max={tasks}\n"
            f"topics={','.join(TOPICS.values())}\n"
            f"connection.url=jdbc:postgresql://127.0.0.1:{pg.port}/smart_access"
            "?stringtype=unspecified&reWriteBatchedInserts=true\n"
            "connection.username=smart_access_loader\n"
            f"connection.password={pg.role_passwords['smart_access_loader']}\n"
            "insert.mode=insert\n"
            "primary.key.mode=none\n"
            "schema.evolution=none\n"
            f"batch.size={BATCH_SIZE}\n"
            "transforms=coordinates\n"
            "transforms.coordinates.type=org.apache.kafka.connect.transforms.InsertField$Value\n"
            "transforms.coordinates.topic.field=kafka_topic\n"
            "transforms.coordinates.partition.field=kafka_partition\n"
            "transforms.coordinates.offset.field=kafka_offset\n"
            "transforms.coordinates.timestamp.field=kafka_timestamp\n"
        )
        (folder / "log4j2.properties").write_text(
            "rootLogger.level=WARN\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
            "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
            "appender.stdout.layout.type=PatternLayout\n"
            "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.folder / "connect.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "java",
                HEAP,
                f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
                "-cp",
                f"{ensure_jars()}/*",
                "org.apache.kafka.connect.cli.ConnectStandalone",
                str(self.folder / "worker.properties"),
                str(self.folder / "sink.properties"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.folder / "connect.log").read_text(errors="replace").splitlines()[-3:]
            raise PeerError(f"the Connect worker exited with {self.proc.returncode}: {tail}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wait(cur: Any, worker: ConnectWorker, until: int, timeout: float, distinct: bool) -> int:
    deadline = time.monotonic() + timeout
    while True:
        rows = _count(cur, distinct)
        if rows >= until:
            return rows
        worker.check()
        if time.monotonic() > deadline:
            raise PeerError(f"the peer landed {rows} of {until} rows in {timeout:.0f}s")
        time.sleep(0.5 if distinct else 0.1)


def drain(
    kafka: EphemeralKafka, pg: EphemeralPostgres, expected: int, tasks: int, timeout: float = 1800
) -> PeerRun:
    """Land every peer message once into fresh tables; seconds from the first landed
    row (its `_ingested_at`, stamped when inserted) to the moment all are committed."""
    create_tables(pg.dsn())
    worker = ConnectWorker(kafka, pg, pg.root / f"connect-{tasks}", f"peer-{tasks}-tasks", tasks)
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    try:
        worker.start()
        with conn.cursor() as cur:
            _wait(cur, worker, expected, timeout, distinct=False)
            done = time.time()
            cur.execute(
                "select extract(epoch from min(first)) from ("
                + " union all ".join(
                    f"select min(_ingested_at) as first from public.{t}" for t in TOPICS.values()
                )
                + ") as firsts"
            )
            first = float(cur.fetchone()[0])
            rows = _count(cur)
            duplicates = rows - _count(cur, distinct=True)
    finally:
        worker.stop()
        conn.close()
    return PeerRun(tasks=tasks, rows=rows, seconds=done - first, duplicates=duplicates)


def drain_with_kill(
    kafka: EphemeralKafka,
    pg: EphemeralPostgres,
    expected: int,
    tasks: int,
    kill_at: float = 0.5,
    timeout: float = 1800,
) -> PeerRun:
    """Kill the worker with SIGKILL once `kill_at` of the rows landed, start it again,
    wait until every message landed at least once; count the duplicates."""
    create_tables(pg.dsn())
    worker = ConnectWorker(kafka, pg, pg.root / "connect-kill", "peer-kill", tasks)
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    started = time.monotonic()
    try:
        worker.start()
        with conn.cursor() as cur:
            _wait(cur, worker, int(expected * kill_at), timeout, distinct=False)
            worker.stop(signal.SIGKILL)
            logger.info(
                "peer: worker killed with SIGKILL at %d rows; starting it again", _count(cur)
            )
            worker.start()
            _wait(cur, worker, expected, timeout, distinct=True)
            # re-delivery can go on past the last new row: wait until the count settles
            rows = _count(cur)
            while True:
                time.sleep(2)
                worker.check()
                now = _count(cur)
                if now == rows:
                    break
                rows = now
            duplicates = rows - _count(cur, distinct=True)
    finally:
        worker.stop()
        conn.close()
    return PeerRun(
        tasks=tasks, rows=rows, seconds=time.monotonic() - started, duplicates=duplicates
    )


def java_version() -> str:
    out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    lines = (out.stderr or out.stdout).splitlines()
    return lines[0] if lines else ""
