"""The simulator's Prometheus metrics count what it sends and what Kafka acknowledges."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from ingest_helpers import REPO, new_prefix
from prometheus_client.parser import text_string_to_metric_families

from stack.ephemeral import EphemeralKafka, free_port

ACKED = "smart_access_simulator_acknowledged_total"


def _total(samples: dict, name: str) -> float:
    return sum(v for (n, _labels), v in samples.items() if n == name)


def test_sent_and_acknowledged_counters_move(kafka: EphemeralKafka) -> None:
    prefix = new_prefix(kafka)
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streaming.producer",
            "--rate",
            "200",
            "--duration",
            "20",
            "--invalid-ratio",
            "0.1",
            "--topic-prefix",
            prefix,
            "--metrics-port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        deadline = time.monotonic() + 18
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.5)
                continue
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            acked = sum(
                v
                for (n, _l), v in samples.items()
                if n == "smart_access_simulator_acknowledged_total"
            )
            if acked >= 500:
                break
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
    sent: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if name == "smart_access_simulator_sent_total":  # summed over topics
            truth = dict(labels)["truth"]
            sent[truth] = sent.get(truth, 0) + value
    acked = sum(
        v for (n, _l), v in samples.items() if n == "smart_access_simulator_acknowledged_total"
    )
    assert acked >= 500, samples
    assert sent.get("valid", 0) > 0 and sent.get("invalid", 0) > 0
    assert acked <= sum(sent.values())  # acknowledged only what was sent
    topics = {
        dict(labels)["topic"]
        for (name, labels), _v in samples.items()
        if name == "smart_access_simulator_acknowledged_total"
    }
    assert "smart-access.events" in topics
