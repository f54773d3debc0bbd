"""The three-broker cluster profile with SCRAM over TLS: real brokers, real consumers.

One cluster of three KRaft nodes (KAFKA_BROKERS=3 KAFKA_AUTH=scram, as `make up`
makes it) and a PostgreSQL of its own serve the whole module; the topics there carry
the contract's own names, so the principals' ACLs are exactly the production ones.

- every principal's verdict on every topic, produce and consume, is the ACL table's
  (streaming/principals.py), checked against the brokers' own answers;
- a wrong password, a missing CA and a client without TLS fail with one line;
- during a 200 k-event run with two sink processes, the broker leading the most
  partitions is killed (-9) and another is shut down in order: raw holds every
  event exactly once and no partition stays under-replicated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import streamlit as st
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from analytics.kafka_ui import inspector
from stack.ephemeral import EphemeralKafkaCluster, EphemeralPostgres
from streaming.principals import ACLS, PRINCIPALS, Grant, username
from streaming.topics import CONSUMER_GROUP, EVENTS, TOPICS
from tests.apptest_support import KAFKA_UI, frame_with, metrics, open_page, texts
from tests.integration.ingest_helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
ALL_TOPICS = [spec.name for spec in TOPICS]
RUN_EVENTS = 200_000


@pytest.fixture(scope="module")
def cluster() -> Iterator[EphemeralKafkaCluster]:
    nodes = EphemeralKafkaCluster.create(brokers=3, auth="scram")
    try:
        yield nodes
    finally:
        nodes.destroy()


@pytest.fixture(scope="module")
def warehouse() -> Iterator[EphemeralPostgres]:
    server = EphemeralPostgres.create()
    try:
        yield server
    finally:
        server.destroy()


# --- what the table says ---------------------------------------------------------------


def _matches(grant: Grant, resource: str, name: str) -> bool:
    if grant.resource != resource:
        return False
    if grant.name == "*":
        return True
    return name.startswith(grant.name) if grant.pattern == "prefixed" else name == grant.name


def allowed(role: str, operation: str, topic: str) -> bool:
    """The ACL table's verdict (admin is a super user)."""
    if role == "admin":
        return True
    return any(
        grant.role == role and operation in grant.operations and _matches(grant, "topic", topic)
        for grant in ACLS
    )


# --- what the brokers say ------------------------------------------------------------------


def produce_verdicts(cluster: EphemeralKafkaCluster, role: str) -> dict[str, bool]:
    """Topic -> whether a record sent as `role` was acknowledged."""
    producer = Producer({**cluster.client_config(role), "acks": "all", "message.timeout.ms": 20000})
    verdicts: dict[str, bool] = {}

    def done(err: Any, msg: Any) -> None:
        verdicts[msg.topic()] = err is None

    for topic in ALL_TOPICS:
        producer.produce(topic, key=b"acl-probe", value=b"{}", on_delivery=done)
    producer.flush(30)
    assert set(verdicts) == set(ALL_TOPICS), f"{role}: no delivery report for some topics"
    return verdicts


def consume_verdicts(cluster: EphemeralKafkaCluster, role: str) -> dict[str, bool]:
    """Topic -> whether `role` could fetch a record of partition 0 (each has one).
    A topic the role may not even describe is invisible to it: no record within the
    wait is a refusal too (the admin reading every topic shows the wait is enough)."""
    consumer = Consumer(
        {
            **cluster.client_config(role),
            "group.id": f"acl-probe-{uuid.uuid4().hex[:6]}",  # assign() only: no group use
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    verdicts: dict[str, bool] = {}
    try:
        consumer.assign([TopicPartition(t, 0, 0) for t in ALL_TOPICS])
        deadline = time.monotonic() + 10
        while len(verdicts) < len(ALL_TOPICS) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is None:
                verdicts[msg.topic()] = True
            elif msg.error().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                verdicts[msg.topic()] = False
                consumer.incremental_unassign([TopicPartition(msg.topic(), 0)])
    finally:
        consumer.close()
    return {topic: verdicts.get(topic, False) for topic in ALL_TOPICS}


def test_every_principal_gets_exactly_what_the_acl_table_grants(
    cluster: EphemeralKafkaCluster,
) -> None:
    # one record in partition 0 of every topic, written by the admin, for the readers
    seed = Producer(cluster.client_config("admin"))
    for topic in ALL_TOPICS:
        seed.produce(topic, key=b"seed", value=b"{}", partition=0)
    assert seed.flush(30) == 0
    probes = {("write", p.role): produce_verdicts for p in PRINCIPALS} | {
        ("read", p.role): consume_verdicts for p in PRINCIPALS
    }
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:  # each probe mostly waits
        futures = {key: pool.submit(probe, cluster, key[1]) for key, probe in probes.items()}
    differences = [
        f"{username(role)} {operation} {topic}: {granted}"
        for (operation, role), future in futures.items()
        for topic, granted in future.result().items()
        if granted != allowed(role, operation, topic)
    ]
    assert differences == [], "the brokers and the ACL table disagree"
    # the comparison is not vacuous: every principal is granted something, and all
    # but the admin and the operator (who redrives into any platform topic) are
    # refused something
    for principal in PRINCIPALS:
        grants = {
            allowed(principal.role, op, topic) for op in ("read", "write") for topic in ALL_TOPICS
        }
        assert True in grants, principal.username
        if principal.role not in {"admin", "operator"}:
            assert False in grants, principal.username


def test_only_the_admin_creates_topics(cluster: EphemeralKafkaCluster) -> None:
    for principal in PRINCIPALS:
        name = f"acl-create-{principal.role}-{uuid.uuid4().hex[:6]}"
        admin = AdminClient(cluster.client_config(principal.role))
        future = admin.create_topics([NewTopic(name, 1, 3)], request_timeout=15)[name]
        if principal.role == "admin":
            future.result()
        else:
            with pytest.raises(Exception, match=r"TOPIC_AUTHORIZATION_FAILED|not authorized"):
                future.result()


def test_the_airflow_principal_reads_the_sink_groups_offsets_but_cannot_write(
    cluster: EphemeralKafkaCluster,
) -> None:
    sink = Consumer({**cluster.client_config("consumer"), "group.id": CONSUMER_GROUP})
    deadline = time.monotonic() + 60
    while True:  # a new cluster makes its offsets topic on the first commit
        try:
            sink.commit(offsets=[TopicPartition(EVENTS, 0, 1)], asynchronous=False)
            break
        except KafkaException as exc:
            retriable = ("NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT")
            if time.monotonic() > deadline or not any(c in str(exc) for c in retriable):
                raise
            time.sleep(0.5)
    sink.close()
    gate = Consumer({**cluster.client_config("airflow"), "group.id": CONSUMER_GROUP})
    try:
        (committed,) = gate.committed([TopicPartition(EVENTS, 0)], timeout=15)
        assert committed.offset == 1
        with pytest.raises(Exception, match=r"GROUP_AUTHORIZATION_FAILED|not authorized"):
            gate.commit(offsets=[TopicPartition(EVENTS, 0, 0)], asynchronous=False)
    finally:
        gate.close()


def _run(module: str, env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    return result.returncode, result.stderr


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"KAFKA_SASL_PASSWORD": "wrong"}, "KAFKA_SIMULATOR_PASSWORD"),
        ({"KAFKA_SSL_CA_LOCATION": ""}, "KAFKA_SSL_CA_LOCATION"),
        ({"KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.crt"}, "KAFKA_SSL_CA_LOCATION"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": ""}, "KAFKA_SASL_USERNAME"),
    ],
    ids=["wrong-password", "no-ca", "missing-ca-file", "no-username"],
)
def test_a_misconfigured_simulator_stops_at_once_with_one_line(
    cluster: EphemeralKafkaCluster, change: dict[str, str], names: str
) -> None:
    env = {**cluster.env("simulator"), **change}
    env = {k: v for k, v in env.items() if v != ""}
    started = time.monotonic()
    code, stderr = _run("streaming.producer", env, "--rate", "100", "--count", "50")
    assert code != 0
    lines = _error_lines(stderr)
    assert len(lines) == 1, stderr[-2000:]
    assert names in lines[0], lines[0]
    assert time.monotonic() - started < 45, "it should fail fast, not wait out a timeout"


def test_a_consumer_with_a_wrong_password_stops_with_one_line_naming_its_variable(
    cluster: EphemeralKafkaCluster, warehouse: EphemeralPostgres
) -> None:
    env = {
        **cluster.env("consumer"),
        **warehouse.env("smart_access_loader"),
        "KAFKA_SASL_PASSWORD": "wrong",
        "KAFKA_CREDENTIAL_VARIABLE": "KAFKA_CONSUMER_PASSWORD",
    }
    code, stderr = _run("streaming.consumer", env, "--group", "wrong-password-probe")
    assert code != 0
    lines = _error_lines(stderr)
    assert len(lines) == 1 and "KAFKA_CONSUMER_PASSWORD" in lines[0], stderr[-2000:]


def test_make_up_with_a_wrong_admin_password_stops_at_once_with_one_line(
    cluster: EphemeralKafkaCluster,
) -> None:
    """What `make up` waits on before it creates topics and ACLs as the admin."""
    from stack import kafka
    from stack.config import StackError

    started = time.monotonic()
    with pytest.raises(StackError, match="KAFKA_ADMIN_PASSWORD") as refused:
        kafka.wait_ready(
            cluster.bootstrap,
            timeout=60,
            client={**cluster.client_config("admin"), "sasl.password": "wrong"},
            brokers=3,
        )
    assert "\n" not in str(refused.value) and "refused the login" in str(refused.value)
    assert time.monotonic() - started < 20, "it should not wait out the timeout"


@pytest.mark.parametrize("password", ["right", "wrong"])
def test_the_airflow_lag_gate_logs_in_as_its_principal_and_a_wrong_password_is_one_line(
    cluster: EphemeralKafkaCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, password: str
) -> None:
    """Through the Kafka provider's hook and the connection `make up` gives Airflow."""
    from airflow.sdk.exceptions import AirflowFailException

    from smart_access.pipeline import read_consumer_lag
    from smart_access.settings import PipelineSettings
    from stack import airflow
    from stack.config import StackConfig

    config = StackConfig.from_env(
        {
            "SMART_ACCESS_STACK_DIR": str(tmp_path),
            "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap,
            "KAFKA_AUTH": "scram",
            "KAFKA_SSL_CA_LOCATION": str(cluster.ca_cert),
            "KAFKA_AIRFLOW_PASSWORD": cluster.passwords["airflow"] if password == "right" else "x",
        }
    )
    for key, value in airflow.connection_env(config).items():
        monkeypatch.setenv(key, value)
    settings = PipelineSettings()
    if password == "right":
        assert len(read_consumer_lag(settings, CONSUMER_GROUP, [EVENTS], timeout=10)) == 6
        return
    with pytest.raises(AirflowFailException) as failed:
        read_consumer_lag(settings, CONSUMER_GROUP, [EVENTS], timeout=4)
    line = str(failed.value)
    assert "KAFKA_AIRFLOW_PASSWORD" in line and "\n" not in line, line


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_a_client_without_tls_is_refused(cluster: EphemeralKafkaCluster, protocol: str) -> None:
    config: dict[str, Any] = {
        "bootstrap.servers": cluster.bootstrap,
        "security.protocol": protocol,
        "log_level": 0,
    }
    if protocol.startswith("SASL"):
        config |= {
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": username("admin"),
            "sasl.password": cluster.passwords["admin"],
        }
    with pytest.raises(Exception, match=r"(?i)transport|timed out"):
        AdminClient(config).list_topics(timeout=3)
    # the same login over TLS works: the refusal is the missing TLS
    assert AdminClient(cluster.client_config("admin")).list_topics(timeout=10).brokers


def test_the_inspector_shows_three_brokers_and_a_missing_one_as_under_replication(
    cluster: EphemeralKafkaCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in cluster.env("inspector").items():  # its own, read-only principal
        monkeypatch.setenv(key, value)
    at = open_page(KAFKA_UI, "views/brokers.py")
    table = frame_with(at, "broker", "address", "controller", "partitions led", "replicas")
    assert list(table["broker"]) == [1, 2, 3]
    assert list(table["address"]) == [f"127.0.0.1:{n.port}" for n in cluster.nodes]
    assert list(table["controller"]).count("active") == 1
    partitions = inspector.cluster(cluster.client_config()).partitions
    assert int(table["partitions led"].sum()) == partitions
    assert int(table["replicas"].sum()) == 3 * partitions  # everything replicated thrice
    assert metrics(at)["Under-replicated partitions"] == "0"
    cluster.stop_node(3, signal.SIGTERM)
    try:
        wait_until(lambda: under_replicated(cluster) > 0, 60, "partitions to lose a replica")
        st.cache_data.clear()  # the page caches the cluster's answer for a few seconds
        at = open_page(KAFKA_UI, "views/brokers.py")
        assert list(frame_with(at, "broker", "address")["broker"]) == [1, 2]
        assert int(metrics(at)["Under-replicated partitions"]) > 0
        assert "replica out of sync" in texts(at)
    finally:
        cluster.start_node(3)
    wait_until(lambda: under_replicated(cluster) == 0, 120, "the stopped broker to catch up")


def test_the_inspector_with_a_wrong_password_says_so_in_one_line(
    cluster: EphemeralKafkaCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in cluster.env("inspector").items():
        monkeypatch.setenv(key, "not-its-password" if key.endswith("PASSWORD") else value)
    st.cache_data.clear()
    at = open_page(KAFKA_UI, "views/brokers.py")
    (error,) = [e.value for e in at.error]
    assert "refused the login" in error and "KAFKA_INSPECTOR_PASSWORD" in error
    assert "\n" not in error and "did not answer" not in error


# --- a broker dies during a run --------------------------------------------------------------


def _events(count: int) -> Iterator[tuple[str, bytes, bytes]]:
    start = datetime.now(UTC) - timedelta(minutes=1)
    for n in range(count):
        device = f"dev-{n % 500}"
        yield (
            EVENTS,
            device.encode(),
            json.dumps(
                {
                    "schema_version": 1,
                    "event_id": str(uuid.uuid4()),
                    "device_id": device,
                    "household_id": f"hh-{n % 500 // 3}",
                    "event_ts": (start + timedelta(microseconds=n)).isoformat(),
                    "event_type": ("open", "close")[n % 2],
                    "trigger_source": "app",
                }
            ).encode(),
        )


def _leaders(cluster: EphemeralKafkaCluster) -> Counter[int]:
    metadata = AdminClient(cluster.client_config()).list_topics(timeout=10)
    return Counter(
        part.leader
        for name, topic in metadata.topics.items()
        if not name.startswith("__")
        for part in topic.partitions.values()
    )


def under_replicated(cluster: EphemeralKafkaCluster) -> int:
    metadata = AdminClient(cluster.client_config()).list_topics(timeout=10)
    return sum(
        len(part.isrs) < len(part.replicas)
        for topic in metadata.topics.values()
        for part in topic.partitions.values()
    )


def _landed(warehouse: EphemeralPostgres) -> tuple[int, int, int]:
    conn = psycopg2.connect(warehouse.dsn())
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select count(*), count(distinct event_id), "
                "count(distinct (kafka_topic, kafka_partition, kafka_offset)) "
                "from raw.access_events"
            )
            return cur.fetchone()  # type: ignore[return-value]
    finally:
        conn.close()


def test_a_killed_and_a_stopped_broker_lose_and_duplicate_nothing(
    cluster: EphemeralKafkaCluster, warehouse: EphemeralPostgres, tmp_path: Path
) -> None:
    consumers = []
    for n in (1, 2):
        log = (tmp_path / f"consumer-{n}.log").open("w")
        consumers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streaming.consumer",
                ],
                env={
                    "PATH": os.environ["PATH"],
                    "PYTHONPATH": str(REPO),
                    **cluster.env("consumer"),
                    **warehouse.env("smart_access_loader"),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        )
    producer = Producer(
        {
            **cluster.client_config("simulator"),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "delivery.timeout.ms": 120_000,
        }
    )
    failed: list[str] = []
    acked = 0

    def done(err: Any, _msg: Any) -> None:
        nonlocal acked
        if err is None:
            acked += 1
        else:
            failed.append(str(err))

    victim = _leaders(cluster).most_common(1)[0][0]
    other = next(node.node_id for node in cluster.nodes if node.node_id != victim)
    events = 0
    try:
        for topic, key, value in _events(RUN_EVENTS):
            while True:
                try:
                    producer.produce(topic, key=key, value=value, on_delivery=done)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            events += 1
            if events % (RUN_EVENTS // 5):
                continue
            # each fault strikes while both consumers are landing: part of what was
            # sent is in raw, the rest still in flight
            step = events // (RUN_EVENTS // 5)
            half = events // 2
            wait_until(lambda n=half: _landed(warehouse)[0] >= n, 120, f"landing by step {step}")
            if step == 1:
                cluster.stop_node(victim, signal.SIGKILL)  # the busiest leader crashes
            elif step == 2:
                cluster.start_node(victim)
            elif step == 3:
                wait_until(lambda: under_replicated(cluster) == 0, 120, "the killed to catch up")
                cluster.stop_node(other, signal.SIGTERM)  # a controlled shutdown
            elif step == 4:
                cluster.start_node(other)
        assert producer.flush(120) == 0
        assert failed == [] and acked == RUN_EVENTS
        wait_until(lambda: _landed(warehouse)[0] >= RUN_EVENTS, 240, "every event to land in raw")
        time.sleep(3)  # anything landing twice would arrive now
        rows, distinct_events, distinct_coordinates = _landed(warehouse)
        assert rows == distinct_events == distinct_coordinates == RUN_EVENTS
        wait_until(lambda: under_replicated(cluster) == 0, 120, "no under-replicated partition")
        assert all(proc.poll() is None for proc in consumers), "a consumer died"
    finally:
        for proc in consumers:
            proc.send_signal(signal.SIGTERM)
        for proc in consumers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    logs = "".join((tmp_path / f"consumer-{n}.log").read_text() for n in (1, 2))
    assert logs.count("assigned ") >= 2, "both consumers took partitions"
