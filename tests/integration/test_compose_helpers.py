"""What the compose services run, against a real broker: topic-init and the consumer check."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from stack.ephemeral import EphemeralKafka
from streaming.topics import DLQ, EVENTS, TOPICS

ROOT = Path(__file__).resolve().parents[2]


def _run(kafka: EphemeralKafka, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def _topic_config(admin: AdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result()
    return {name: entry.value for name, entry in entries.items()}


def test_topic_init_leaves_the_topics_exactly_as_specified(kafka: EphemeralKafka) -> None:
    admin = AdminClient(kafka.client_config())
    # Drift that topic-init must undo: a retention nobody asked for.
    drift = ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, DLQ, incremental_configs=[drift])
    admin.incremental_alter_configs([resource])[resource].result()
    deadline = time.monotonic() + 10
    while _topic_config(admin, DLQ)["retention.ms"] != "1000" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _topic_config(admin, DLQ)["retention.ms"] == "1000"

    result = _run(kafka, "deploy.create_topics", "--wait", "30")
    assert result.returncode == 0, result.stderr
    assert "topics up to date" in result.stdout

    metadata = admin.list_topics(timeout=10).topics
    for spec in TOPICS:
        assert len(metadata[spec.name].partitions) == spec.partitions, spec.name
        config = _topic_config(admin, spec.name)
        for key, value in spec.config.items():
            assert config[key] == value, f"{spec.name} {key}"


def test_consumer_check_finds_this_hosts_member_of_the_group(kafka: EphemeralKafka) -> None:
    group = f"compose-health-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": group,
            "client.id": f"{socket.gethostname()}-{os.getpid()}",
            "session.timeout.ms": 10_000,
        }
    )
    try:
        consumer.subscribe([EVENTS])
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert consumer.assignment(), "the test consumer never joined its group"
        present = _run(kafka, "deploy.healthcheck", "consumer", "--group", group)
        assert present.returncode == 0, present.stderr
    finally:
        consumer.close()

    other = f"compose-health-{uuid.uuid4().hex[:8]}"
    absent = _run(kafka, "deploy.healthcheck", "consumer", "--group", other)
    assert absent.returncode == 1
    expected = f"unhealthy: no consumer of this container ({socket.gethostname()}) in group {other}"
    assert absent.stderr.startswith(expected), absent.stderr
