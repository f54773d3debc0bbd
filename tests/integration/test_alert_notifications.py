"""Device-alert notifications against a real PostgreSQL, a real HTTP receiver and, for
the DAG, real Airflow (`airflow dags test`).

The warehouse is this module's own (its `marts.fct_alerts` is seeded with the model's
columns, owned by the transformer role as dbt's would be), so the session's shared
warehouse and its dbt builds are untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from smart_access.callbacks import send_webhook
from smart_access.notifications import NotifySettings, notify
from stack import airflow
from stack.config import REPO_ROOT, StackConfig
from stack.ephemeral import EphemeralPostgres, free_port, make_tempdir
from tests.webhook_receiver import Receiver, webhook_receiver

DAG_ID = "smart_access_alert_notifications"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
NOW = datetime.now(UTC).replace(microsecond=0)

FCT_ALERTS = """
create table marts.fct_alerts (
    alert_id text not null, alert_type text not null, device_id text not null,
    household_id text, started_at timestamptz not null, ended_at timestamptz,
    is_open boolean not null, severity text not null, evaluated_at timestamptz,
    transformed_at timestamptz
)
"""


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver("/notify") as hook:
        yield hook


@pytest.fixture(scope="module")
def webhook(receiver: Receiver) -> str:
    return receiver.url


@pytest.fixture(scope="module")
def warehouse() -> Iterator[EphemeralPostgres]:
    server = EphemeralPostgres.create()
    try:
        owner = server.dsn(user="smart_access_transformer")
        with psycopg2.connect(owner) as conn, conn.cursor() as cur:
            cur.execute(FCT_ALERTS)
        yield server
    finally:
        server.destroy()


def _alert(
    pg: EphemeralPostgres,
    alert_id: str,
    alert_type: str,
    household: str,
    severity: str,
    started: datetime,
    ended: datetime | None = None,
) -> None:
    """Write (or rewrite, as a build does) one episode with a fresh build stamp."""
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("delete from marts.fct_alerts where alert_id = %s", (alert_id,))
        cur.execute(
            "insert into marts.fct_alerts values (%s, %s, %s, %s, %s, %s, %s, %s, now(),"
            " clock_timestamp())",
            (
                alert_id,
                alert_type,
                f"dev-{alert_id}",
                household,
                started,
                ended,
                ended is None,
                severity,
            ),
        )


def _rows(pg: EphemeralPostgres) -> dict[tuple[str, str], tuple[str, int]]:
    with psycopg2.connect(pg.dsn()) as conn, conn.cursor() as cur:
        cur.execute("select alert_id, transition, status, attempts from ops.alert_notifications")
        return {(a, t): (s, n) for a, t, s, n in cur.fetchall()}


def _run(pg: EphemeralPostgres, settings: NotifySettings, now: datetime) -> dict[str, int]:
    conn = psycopg2.connect(pg.dsn(user="smart_access_transformer"))
    try:
        return dict(notify(conn, settings, send_webhook, run_id="test", now=now))
    finally:
        conn.close()


def _sent(receiver: Receiver) -> list[str]:
    return [body["notification_id"] for body in receiver.received]


def test_each_transition_is_sent_once_with_retries_quiet_hours_and_throttle(
    warehouse: EphemeralPostgres, receiver: Receiver, webhook: str
) -> None:
    receiver.received.clear()
    settings = NotifySettings(webhook_url=webhook, max_per_household_hour=3)
    _alert(warehouse, "door1", "door_left_open", "h1", "critical", NOW - timedelta(minutes=20))
    _alert(
        warehouse,
        "batt1",
        "low_battery",
        "h2",
        "warning",
        NOW - timedelta(hours=2),
        NOW - timedelta(minutes=5),
    )
    first = _run(warehouse, settings, NOW)
    assert first["sent"] == 3, first
    assert _sent(receiver) == ["batt1:opened", "batt1:closed", "door1:opened"]  # oldest first
    door = next(b for b in receiver.received if b["alert_id"] == "door1")
    assert door["text"].startswith("[critical] door left open on device dev-door1 (household h1)")
    assert door["severity"] == "critical" and door["ended_at"] is None

    # nothing changed: nothing is sent; a rebuild that rewrites the same episode (a new
    # stamp, same alert_id) sends nothing either
    assert _run(warehouse, settings, NOW).get("sent", 0) == 0
    _alert(warehouse, "door1", "door_left_open", "h1", "critical", NOW - timedelta(minutes=20))
    assert _run(warehouse, settings, NOW).get("sent", 0) == 0
    assert len(_sent(receiver)) == 3

    # the door closes: exactly one `closed`
    _alert(
        warehouse,
        "door1",
        "door_left_open",
        "h1",
        "critical",
        NOW - timedelta(minutes=20),
        NOW - timedelta(minutes=1),
    )
    assert _run(warehouse, settings, NOW)["sent"] == 1
    assert _sent(receiver)[-1] == "door1:closed"
    assert "[resolved] door left open" in receiver.received[-1]["text"]

    # a failing receiver: recorded as failed, delivered by the next run, once
    receiver.failing = 1
    _alert(warehouse, "fail1", "repeated_failures", "h3", "critical", NOW - timedelta(minutes=3))
    assert _run(warehouse, settings, NOW)["failed"] == 1
    assert _rows(warehouse)[("fail1", "opened")] == ("failed", 1)
    assert _run(warehouse, settings, NOW)["sent"] == 1
    assert _rows(warehouse)[("fail1", "opened")] == ("sent", 2)
    assert _sent(receiver).count("fail1:opened") == 1

    # quiet hours: the warning waits, the critical goes out; afterwards the warning
    quiet = NotifySettings(
        webhook_url=webhook,
        quiet_hours=f"{(NOW - timedelta(hours=1)):%H:%M}-{(NOW + timedelta(hours=1)):%H:%M}",
    )
    _alert(warehouse, "off1", "offline", "h4", "warning", NOW - timedelta(minutes=30))
    _alert(warehouse, "fail2", "repeated_failures", "h4", "critical", NOW - timedelta(minutes=2))
    held = _run(warehouse, quiet, NOW)
    assert held["held"] == 1 and held["sent"] == 1, held
    assert "off1:opened" not in _sent(receiver) and "fail2:opened" in _sent(receiver)
    assert _run(warehouse, quiet, NOW)["held"] == 1  # still quiet: still waiting
    assert _run(warehouse, settings, NOW + timedelta(hours=2))["sent"] == 1
    assert _sent(receiver).count("off1:opened") == 1

    # the household limit: h5 gets three an hour, the fourth is recorded as throttled
    for n in range(4):
        _alert(warehouse, f"h5-{n}", "low_battery", "h5", "warning", NOW - timedelta(minutes=9 - n))
    throttled = _run(warehouse, settings, NOW)
    assert throttled["sent"] == 3 and throttled["throttled"] == 1, throttled
    assert _rows(warehouse)[("h5-3", "opened")] == ("throttled", 0)

    # every transition was delivered at most once
    assert len(_sent(receiver)) == len(set(_sent(receiver)))


def test_without_a_notifier_alerts_are_recorded_as_skipped(
    warehouse: EphemeralPostgres, receiver: Receiver, webhook: str
) -> None:
    _alert(warehouse, "quiet1", "offline", "h9", "critical", NOW - timedelta(minutes=4))
    outcome = _run(warehouse, NotifySettings(webhook_url=None), NOW)
    assert outcome["skipped"] >= 1
    assert _rows(warehouse)[("quiet1", "opened")][0] == "skipped"
    # configuring one later does not replay them
    before = len(receiver.received)
    _run(warehouse, NotifySettings(webhook_url=webhook), NOW)
    assert len(receiver.received) == before


def test_bad_settings_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        NotifySettings(quiet_hours="10pm-7am")
    with pytest.raises(ValueError, match="IANA time zone"):
        NotifySettings(timezone="Mars/Olympus")


@pytest.fixture(scope="module")
def stack_config(warehouse: EphemeralPostgres) -> Iterator[StackConfig]:
    root = make_tempdir("smart-access-notify-")
    config = StackConfig.from_env(
        {
            "SMART_ACCESS_STACK_DIR": str(root / "stack"),
            "PGHOST": "127.0.0.1",
            "PGPORT": str(warehouse.port),
            "PGUSER": "postgres",
            "PGPASSWORD": "postgres",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "AIRFLOW_PORT": str(free_port()),
            "SMART_ACCESS_PROMETHEUS": "off",
        }
    )
    config.log_dir.mkdir(parents=True)
    airflow.prepare(config, {})
    airflow.migrate_metadata(config, {})
    try:
        yield config
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_the_dag_sends_a_door_left_open_once_under_airflow(
    warehouse: EphemeralPostgres, receiver: Receiver, webhook: str, stack_config: StackConfig
) -> None:
    _alert(warehouse, "door9", "door_left_open", "h7", "critical", NOW - timedelta(minutes=16))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AIRFLOW", "KAFKA_"))}
    env.update(airflow.airflow_env(stack_config, {"SMART_ACCESS_NOTIFY_WEBHOOK_URL": webhook}))
    outputs = []
    for when in (NOW, NOW + timedelta(minutes=15)):
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "airflow"),
                "dags",
                "test",
                DAG_ID,
                when.isoformat(),
            ],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == 0, outputs[-1][-4000:]
    assert _sent(receiver).count("door9:opened") == 1, outputs[-1][-3000:]
    assert "1 sent" in outputs[0] and "nothing new" in outputs[1], outputs[1][-3000:]
    with psycopg2.connect(warehouse.dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "select status, dag_run_id from ops.alert_notifications where alert_id = 'door9'"
        )
        status, run_id = cur.fetchone()
    assert status == "sent" and run_id.startswith("manual__")
