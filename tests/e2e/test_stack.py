"""`make up` / `make status` / `make down` on the real embedded stack.

The stack runs in a temporary folder on free ports, so it never touches the
user's own `.stack/` or a stack already running on the default ports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stack.cli import port_in_use
from stack.config import REPO_ROOT
from stack.ephemeral import free_stack_ports, make_tempdir
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.e2e


def _make(target: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _status(env: dict[str, str]) -> dict[str, list[str]]:
    result = _make("status", env)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    return {row[0]: row for row in rows if len(row) >= 7}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver("/alert") as hook:
        yield hook


@pytest.fixture(scope="module")
def webhook(receiver: Receiver) -> str:
    return receiver.url


@pytest.fixture(scope="module")
def stack_env(webhook: str) -> Iterator[dict[str, str]]:
    root = make_tempdir("smart-access-stack-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "KAFKA_"))}
    env.update(free_stack_ports())
    env.update(
        SMART_ACCESS_STACK_DIR=str(root),
        # Airflow has its own e2e test (test_airflow.py); this one exercises the supervisor.
        SMART_ACCESS_AIRFLOW="off",
        SMART_ACCESS_ALERT_WEBHOOK_URL=webhook,
    )
    try:
        yield env
    finally:
        _make("down", env)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _jmx_messages_in(env: dict[str, str], topic: str) -> float:
    url = f"http://127.0.0.1:{env['KAFKA_METRICS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    wanted = f'kafka_server_brokertopicmetrics_messagesin_total{{topic="{topic}"}} '
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted))


def _messages_in_moves_by_what_is_produced(env: dict[str, str]) -> tuple[float, float]:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    bootstrap = f"127.0.0.1:{env['KAFKA_PORT']}"
    topic = "e2e.jmx-count"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until created
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    before = _jmx_messages_in(env, topic)
    producer = Producer({"bootstrap.servers": bootstrap})
    for n in range(37):
        producer.produce(topic, value=b"%d" % n)
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 30
    after = before
    while time.monotonic() < deadline and after - before < 37:
        time.sleep(1)
        after = _jmx_messages_in(env, topic)
    time.sleep(2)  # and no more than that
    return before, _jmx_messages_in(env, topic) - before


def test_up_status_crash_restart_down(stack_env: dict[str, str]) -> None:
    up = _make("up", stack_env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "topics ... ok" in up.stdout
    # make up waits for Prometheus to see every target up and says so
    assert "all 6 up: consumer, kafka, node, postgres, prometheus, simulator" in up.stdout, (
        up.stdout
    )

    status = _status(stack_env)
    for name in ("postgres", "kafka", "dashboard", "kafka-ui"):
        assert status[name][1] == "RUNNING", status
        assert status[name][3] == "0", status  # no unexpected exit yet
        assert status[name][6] == "yes", status

    # The consumer serves its Prometheus metrics on loopback.
    deadline = time.monotonic() + 30
    body = ""
    while time.monotonic() < deadline and "smart_access_records_consumed_total" not in body:
        try:
            url = f"http://127.0.0.1:{stack_env['CONSUMER_METRICS_PORT']}/metrics"
            with urllib.request.urlopen(url, timeout=3) as response:
                body = response.read().decode()
        except OSError:
            time.sleep(1)
    assert "smart_access_consumer_info" in body and "process_start_time_seconds" in body
    # Prometheus scrapes it, with the platform's rules loaded.
    base = f"http://127.0.0.1:{stack_env['PROMETHEUS_PORT']}"
    health: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and set(health.values()) != {"up"}:
        with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=5) as response:  # noqa: S310
            targets = json.load(response)["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        time.sleep(1)
    # every target of a stack without Airflow: the clients, Kafka's JMX agent,
    # PostgreSQL's and the filesystems' exporters
    expected = {"consumer", "prometheus", "simulator", "kafka", "postgres", "node"}
    assert health == dict.fromkeys(expected, "up"), health
    with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as response:  # noqa: S310
        groups = json.load(response)["data"]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"SmartAccessConsumerDown", "SmartAccessConsumerRestarting"} <= names
    # The broker's JMX exporter counts exactly what is produced to a topic.
    assert _messages_in_moves_by_what_is_produced(stack_env) == (0, 37)

    # A second `make up` is a no-op: the same processes keep running.
    again = _make("up", stack_env)
    assert again.returncode == 0, again.stderr
    assert _status(stack_env)["kafka"][2] == status["kafka"][2]

    # A crashed broker is restarted by the supervisor.
    old_pid = int(status["kafka"][2])
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    restarted = False
    while time.monotonic() < deadline:
        row = _status(stack_env)["kafka"]
        if row[1] == "RUNNING" and row[2] != str(old_pid) and row[6] == "yes":
            restarted = True
            assert row[3] == "1", row  # the kill counts as one restart
            break
        time.sleep(1)
    assert restarted, "the supervisor did not restart the killed broker"

    # One service at a time: a wrong name is one line naming the services there are.
    wrong = _make("stop", {**stack_env, "SERVICE": "consumr"})
    assert wrong.returncode != 0
    errors = [line for line in wrong.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'consumr'" in errors[0] and "consumer" in errors[0], wrong.stderr
    stopped = _make("stop", {**stack_env, "SERVICE": "simulator"})
    assert stopped.returncode == 0, stopped.stderr
    assert _status(stack_env)["simulator"][1] == "STOPPED"
    assert _status(stack_env)["consumer"][1] == "RUNNING"
    before = _status(stack_env)["consumer"][2]
    restarted = _make("restart", {**stack_env, "SERVICE": "consumer"})
    assert restarted.returncode == 0, restarted.stderr
    row = _status(stack_env)["consumer"]
    assert row[1] == "RUNNING" and row[2] != before and row[3] == "0"  # asked for: no crash
    started = _make("start", {**stack_env, "SERVICE": "simulator"})
    assert started.returncode == 0 and _status(stack_env)["simulator"][1] == "RUNNING"

    down = _make("down", stack_env)
    assert down.returncode == 0, down.stderr
    # clients stop first, the services they use last
    assert "stopping simulator, consumer," in down.stdout and "kafka, postgres" in down.stdout
    ports = [
        int(stack_env[k])
        for k in (
            "PGPORT",
            "KAFKA_PORT",
            "KAFKA_CONTROLLER_PORT",
            "DASHBOARD_PORT",
            "KAFKA_UI_PORT",
        )
    ]
    assert not any(port_in_use(p) for p in ports), "a listener survived make down"
    status = _status(stack_env)
    assert status["postgres"][1] == "DOWN"

    # Data survives a down/up: the migrations are not applied again.
    up = _make("up", stack_env)
    assert up.returncode == 0, up.stderr
    assert "applied 0001" not in up.stdout
    _make("down", stack_env)


def test_port_in_use_is_one_clear_line(stack_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        env = {**stack_env, "PGPORT": str(blocker.getsockname()[1])}
        result = _make("up", env)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert f"port {env['PGPORT']}" in errors[0] and "PGPORT=" in errors[0]


def test_wipe_refuses_while_running_and_removes_data(stack_env: dict[str, str]) -> None:
    root = Path(stack_env["SMART_ACCESS_STACK_DIR"])
    up = _make("up", stack_env)
    assert up.returncode == 0, up.stderr
    refused = _make("wipe", stack_env)
    assert refused.returncode != 0 and "make down" in refused.stderr
    assert _make("down", stack_env).returncode == 0
    assert _make("wipe", stack_env).returncode == 0
    assert not root.exists()


def _query(stack_env: dict[str, str], expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{stack_env['PROMETHEUS_PORT']}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expr}
    )
    with urllib.request.urlopen(url, timeout=5) as response:
        return list(json.load(response)["data"]["result"])


def test_a_crash_looping_consumer_alerts_through_to_the_webhook(
    stack_env: dict[str, str], receiver: Receiver
) -> None:
    """Kill the consumer three times: make status says crash-loop, Prometheus fires
    SmartAccessConsumerRestarting and Alertmanager posts it to the webhook."""
    up = _make("up", stack_env)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        seen: set[str] = set()
        for _ in range(4):  # the first start and three restarts, each scraped
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                starts = _query(stack_env, 'process_start_time_seconds{job="consumer"}')
                if starts and starts[0]["value"][1] not in seen:
                    seen.add(starts[0]["value"][1])
                    break
                time.sleep(1)
            else:
                raise AssertionError(f"Prometheus did not scrape a new consumer start: {seen}")
            if len(seen) < 4:
                pid = int(_status(stack_env)["consumer"][2])
                os.kill(pid, signal.SIGKILL)
                time.sleep(4)  # the supervisor restarts it after startsecs
        assert ",crash-loop" in _status(stack_env)["consumer"][1]
        deadline = time.monotonic() + 120
        names: set[str] = set()
        while time.monotonic() < deadline and "SmartAccessConsumerRestarting" not in names:
            names = {
                alert["labels"]["alertname"]
                for body in receiver.received
                for alert in body.get("alerts", [])
                if alert.get("status") == "firing"
            }
            time.sleep(2)
        assert "SmartAccessConsumerRestarting" in names, receiver.received
    finally:
        _make("down", stack_env)
