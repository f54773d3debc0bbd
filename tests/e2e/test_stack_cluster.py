"""`KAFKA_BROKERS=3 KAFKA_AUTH=scram make up`: the embedded stack on a three-broker
cluster with SCRAM over TLS, in a temporary folder on free ports.

Airflow and Prometheus stay off here (their clients are covered by the cluster's
integration tests and test_airflow.py); the sink, the simulator and the inspector
log in as their own principals, and a broker stopped and started again shows in
`make status` and on the inspector's Brokers page.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import psycopg2
import pytest

from stack.cli import port_in_use
from stack.config import PORT_STEP
from stack.ephemeral import free_port, make_tempdir
from tests.browser_support import headless_chromium, open_page, screenshot
from tests.e2e.test_stack import _make, _status

pytestmark = pytest.mark.e2e


def _cluster_port() -> int:
    """A port p with p, p+100 and p+200 free: the three nodes' client ports."""
    while True:
        port = free_port()
        if port + 2 * PORT_STEP < 65536 and not any(
            port_in_use(port + i * PORT_STEP) for i in (1, 2)
        ):
            return port


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with headless_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def cluster_env() -> Iterator[dict[str, str]]:
    root = make_tempdir("smart-access-stack-cluster-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "KAFKA_"))}
    env.update(
        SMART_ACCESS_STACK_DIR=str(root),
        KAFKA_BROKERS="3",
        KAFKA_AUTH="scram",
        KAFKA_SIMULATOR_PASSWORD="e2e-simulator-secret",  # not the default: it must apply
        PGPORT=str(free_port()),
        KAFKA_PORT=str(_cluster_port()),
        KAFKA_CONTROLLER_PORT=str(_cluster_port()),
        SMART_ACCESS_AIRFLOW="off",
        SMART_ACCESS_PROMETHEUS="off",
        DASHBOARD_PORT=str(free_port()),
        KAFKA_UI_PORT=str(free_port()),
        CONSUMER_METRICS_PORT=str(free_port()),
        SIMULATOR_METRICS_PORT=str(free_port()),
    )
    try:
        yield env
    finally:
        _make("down", env)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _landed(env: dict[str, str]) -> int:
    conn = psycopg2.connect(
        host="127.0.0.1",
        port=int(env["PGPORT"]),
        user="postgres",
        password="postgres",
        dbname="smart_access",
    )
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from raw.access_events")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _kafka_line(env: dict[str, str]) -> str:
    result = _make("status", env)
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("kafka: "))


def test_a_scram_cluster_stack_streams_and_survives_a_broker_stop(
    cluster_env: dict[str, str], browser: object
) -> None:
    up = _make("up", cluster_env)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "(3 brokers) with SCRAM over TLS" in up.stdout
    assert "ACLs: 38 created" in up.stdout
    assert "kafka: 3 of 3 brokers up" in up.stdout
    status = _status(cluster_env)
    base = int(cluster_env["KAFKA_PORT"])
    for i in (1, 2, 3):
        row = status[f"kafka-{i}"]
        assert row[1] == "RUNNING" and row[5] == f"127.0.0.1:{base + (i - 1) * PORT_STEP}"
        assert row[6] == "yes"
    assert "kafka" not in status
    # the simulator (its own principal and password) writes, the sink (its own) lands
    _wait(lambda: _landed(cluster_env) > 50, 90, "events to land through SCRAM clients")

    stop = _make("stop", {**cluster_env, "SERVICE": "kafka-2"})
    assert stop.returncode == 0, stop.stderr
    _wait(lambda: "2 of 3 brokers up" in _kafka_line(cluster_env), 60, "the cluster to see it")
    assert " 0 under-replicated" not in _kafka_line(cluster_env)
    before = _landed(cluster_env)
    _wait(lambda: _landed(cluster_env) > before + 50, 90, "landing to go on with two brokers")
    page = open_page(browser, int(cluster_env["KAFKA_UI_PORT"]), "brokers", "Brokers")
    page.get_by_text("replica out of sync").first.wait_for(timeout=45_000)  # type: ignore[attr-defined]
    page.close()  # type: ignore[attr-defined]

    start = _make("start", {**cluster_env, "SERVICE": "kafka-2"})
    assert start.returncode == 0, start.stderr
    _wait(
        lambda: (
            "3 of 3 brokers up" in (line := _kafka_line(cluster_env))
            and " 0 under-replicated" in line
        ),
        120,
        "the restarted broker to catch up",
    )
    page = open_page(
        browser, int(cluster_env["KAFKA_UI_PORT"]), "brokers", f"127.0.0.1:{base + 2 * PORT_STEP}"
    )
    body = page.inner_text("body")  # type: ignore[attr-defined]
    for i in (1, 2, 3):
        assert f"127.0.0.1:{base + (i - 1) * PORT_STEP}" in body
    screenshot(page, "kafka-brokers-cluster")

    # the same folder under another profile: one line, nothing changed
    other = _make("up", {**cluster_env, "KAFKA_BROKERS": "1"})
    assert other.returncode != 0
    errors = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "KAFKA_BROKERS=3 KAFKA_AUTH=scram" in errors[0], other.stderr
    assert _status(cluster_env)["kafka-3"][1] == "RUNNING"
